"""The live tally on each project's root message, refreshed with chat.update but throttled.

Slack allows chat.update roughly once a second per channel before answering 429, and a burst of
reactions arrives far faster. Each project is refreshed at most once per interval: the first change
after a quiet spell refreshes at once, later ones within the interval share one trailing refresh
that renders the state as it is then, so the last change is always shown. Refreshes of one
project never overlap, so Slack receives them in order. A refresh Slack did not take is done again
by the `Repairer`, until Slack shows what the database holds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.engine import Engine

from runner.core.db import session_scope
from runner.data import projects

log = logging.getLogger(__name__)


class Throttle:
    """Run `action(key)` at most once per `interval` seconds per key, always including the last call."""

    def __init__(self, action: Callable[[int], None], interval: float) -> None:
        self.action = action
        self.interval = interval
        self._lock = threading.Lock()
        self._last: dict[int, float] = {}
        self._scheduled: set[int] = set()
        self._running: dict[int, threading.Lock] = {}

    def touch(self, key: int) -> None:
        with self._lock:
            if key in self._scheduled:
                return  # a trailing refresh will render this change too
            wait = self._last.get(key, float("-inf")) + self.interval - time.monotonic()
            running = self._running.get(key)
            # One under way (perhaps on this very thread, touching from inside the action): a
            # trailing one follows it, rather than this thread waiting for it (or for itself).
            busy = running is not None and running.locked()
            if wait > 0 or busy:
                self._scheduled.add(key)
                timer = threading.Timer(max(wait, 0.0), self._fire, args=(key,))
                timer.daemon = True
                timer.start()
                return
            self._last[key] = time.monotonic()
        self._run(key)

    def _fire(self, key: int) -> None:
        with self._lock:
            self._scheduled.discard(key)
            self._last[key] = time.monotonic()
        self._run(key)

    def _run(self, key: int) -> None:
        # One refresh at a time per key: two overlapping refreshes could reach Slack out of order
        # and leave the older state on screen.
        with self._lock:
            running = self._running.setdefault(key, threading.Lock())
        try:
            with running:
                self.action(key)
        except Exception:  # a refresh must never take a listener down; the next change retries
            log.exception("tally refresh failed", extra={"project_id": key})


class SharedThrottle(Throttle):
    """`Throttle` across processes (web and event workers alike), through Redis.

    Slack's limit is per channel, not per process, so with event workers (`bot.handoff`) the
    processes agree on each project's refreshes: one at a time (a Redis lock), at most once per
    interval (a key that expires after it), and none that would show nothing new: each refresh
    notes in Redis when it began rendering, on Redis's clock, and a process whose latest change is
    older than that skips its own. A change's age is measured on this process's monotonic clock and
    anchored to Redis's clock when a refresh is considered, so the hosts' clocks need not agree, and
    a change costs no Redis call (in a busy process a round trip per vote costs far more than the
    call itself: about 0.5 ms of CPU, measured). The first change after a quiet spell is shown at
    once, later ones share a trailing refresh, as with `Throttle`. When Redis fails, each process
    throttles on its own (`Throttle`) for a minute before asking it again.
    """

    LOCK_SECONDS = 120.0  # a refresh holding the lock longer than this (a dead process) loses it
    MARGIN = 0.005  # seconds: more than the error of anchoring to Redis's clock (one round trip)
    ALONE_SECONDS = 60.0  # after Redis fails, how long each process throttles on its own

    def __init__(self, action: Callable[[int], None], interval: float, redis: Redis) -> None:
        super().__init__(action, interval)
        self.redis = redis
        self._touched: dict[int, float] = {}  # key → monotonic time of this process's latest change
        self._drivers: set[int] = set()  # keys this process is seeing shown
        self._alone_until = float("-inf")  # until then, Redis having failed, throttle in this process

    def touch(self, key: int) -> None:
        if time.monotonic() < self._alone_until:  # Redis failed a moment ago: do not wait on it again
            super().touch(key)
            return
        with self._lock:
            self._touched[key] = time.monotonic()
            if key in self._drivers:
                return
            self._drivers.add(key)
        # A refresh that is due now runs on this thread, as with `Throttle`; one that must wait
        # (for the interval, or for another process's refresh) waits on a thread of its own.
        if not self._drive(key, on_caller=True):
            threading.Thread(target=self._drive, args=(key,), name="ftbot-tally", daemon=True).start()

    def _drive(self, key: int, *, on_caller: bool = False) -> bool:
        """Refresh `key` until a render that began after this process's latest change was sent.

        On the caller's thread it never waits: False means what is left needs waiting for.
        """
        try:
            while True:
                lock = self.redis.lock(f"ftbot:tally:{key}:lock", timeout=self.LOCK_SECONDS)
                if not lock.acquire(blocking=not on_caller):
                    return False
                try:
                    wait = self._step(key)
                finally:
                    lock.release()
                if wait is None:
                    return True
                if wait > 0:
                    if on_caller:
                        return False
                    time.sleep(wait)  # outside the lock: other processes may check meanwhile
        except RedisError:
            log.warning("tally throttle: Redis unreachable, throttling in this process for a minute")
            with self._lock:
                self._drivers.discard(key)
            self._alone_until = time.monotonic() + self.ALONE_SECONDS
            super().touch(key)
            return True

    def _step(self, key: int) -> float | None:
        """One look, under the lock: None when this process's changes are shown (its driving ends),
        0 after a refresh, else the seconds until the next refresh may run."""
        prefix = f"ftbot:tally:{key}"
        seconds, micros = self.redis.time()
        now = seconds + micros / 1e6  # Redis's clock, now (give or take the round trip)
        with self._lock:
            touched = self._touched[key]
        changed = now - (time.monotonic() - touched)  # this process's latest change, on Redis's clock
        if float(self.redis.get(f"{prefix}:shown") or 0) > changed + self.MARGIN:
            with self._lock:  # a change since `touched` was read would find no driver: look again
                if self._touched[key] == touched:
                    self._drivers.discard(key)
                    return None
            return 0.0
        wait = int(self.redis.pttl(f"{prefix}:gate"))  # ms; negative: no refresh lately
        if wait > 0:
            return wait / 1000
        self._run(key)  # renders the database as it is after `now`: every change committed before
        self.redis.set(f"{prefix}:gate", 1, px=max(1, int(self.interval * 1000)))
        self.redis.set(f"{prefix}:shown", repr(now))
        return 0.0


class Repairer(threading.Thread):
    """Brings back in line what a refresh left behind: Slack's answers to ``reactions.add``,
    ``reactions.remove`` or ``chat.update`` can be refusals even after retries (rate limits, an
    outage), and the tally must still end up showing the last change.

    `refresh_tally` marks a project ``tally_dirty`` until a refresh has gone through; this thread
    refreshes (through the throttle, so never alongside another refresh of the project) every
    dirty project every ``interval`` seconds, and every project once at start, in case a process
    died with a refresh still scheduled.
    """

    def __init__(self, engine: Engine, throttle: Throttle, interval: float) -> None:
        super().__init__(name="ftbot-tally-repair", daemon=True)
        self.engine, self.throttle, self.interval = engine, throttle, interval
        self.stopped = threading.Event()

    def repair(self, *, everything: bool = False) -> list[int]:
        """Refresh the dirty projects (or, with `everything`, every project with a root); their ids."""
        with session_scope(self.engine) as session:
            due = (
                [p.id for p in projects.list_projects(session) if p.root_ts and p.id is not None]
                if everything
                else projects.dirty_tallies(session)
            )
        for project_id in due:
            self.throttle.touch(project_id)
        return due

    def run(self) -> None:
        everything = True
        while True:
            try:
                repaired = self.repair(everything=everything)
                if repaired and not everything:
                    log.info("refreshing tallies Slack did not take", extra={"projects": repaired})
                everything = False
            except Exception:
                log.exception("tally repair failed; trying again later")
            if self.stopped.wait(self.interval):
                return

    def stop(self) -> None:
        self.stopped.set()
