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
    interval (a key that expires after it), and none that would show nothing new. Each change
    counts itself in Redis (``INCR``) after its commit; a refresh reads the count before it renders,
    and afterwards records it as shown, so a process whose last change is already shown skips its
    own refresh. The first change after a quiet spell is shown at once (on a thread of its own), later
    ones share a trailing refresh, as with `Throttle`. While Redis cannot be reached, each process
    falls back on its own `Throttle`.
    """

    LOCK_SECONDS = 120.0  # a refresh holding the lock longer than this (a dead process) loses it

    def __init__(self, action: Callable[[int], None], interval: float, redis: Redis) -> None:
        super().__init__(action, interval)
        self.redis = redis
        self._wanted: dict[int, int] = {}  # key → the latest change count this process made
        self._drivers: set[int] = set()  # keys with a thread seeing their changes shown

    def touch(self, key: int) -> None:
        try:
            wanted = int(self.redis.incr(f"ftbot:tally:{key}:changes"))
        except RedisError:
            log.warning("tally throttle: Redis unreachable, throttling in this process only")
            super().touch(key)
            return
        with self._lock:
            self._wanted[key] = max(self._wanted.get(key, 0), wanted)
            if key in self._drivers:
                return
            self._drivers.add(key)
        threading.Thread(target=self._drive, args=(key,), name="ftbot-tally", daemon=True).start()

    def _drive(self, key: int) -> None:
        """Refresh `key` until Slack was last sent a render that includes this process's changes."""
        prefix = f"ftbot:tally:{key}"
        try:
            while True:
                with self._lock:
                    wanted = self._wanted[key]
                with self.redis.lock(f"{prefix}:lock", timeout=self.LOCK_SECONDS):
                    counted = int(self.redis.get(f"{prefix}:changes") or 0)
                    if counted < wanted:  # Redis lost the count (a restart): start again from it
                        with self._lock:
                            self._wanted[key] = wanted = counted
                    if int(self.redis.get(f"{prefix}:shown") or 0) >= wanted:
                        with self._lock:  # a touch since then would find this thread gone: re-check
                            if self._wanted[key] <= wanted:
                                self._drivers.discard(key)
                                return
                        continue
                    wait = int(self.redis.pttl(f"{prefix}:gate"))  # ms; negative: no refresh lately
                    if wait <= 0:
                        self._run(key)  # renders the database as it is now: every change counted so far
                        self.redis.set(f"{prefix}:gate", 1, px=max(1, int(self.interval * 1000)))
                        self.redis.set(f"{prefix}:shown", counted)
                        continue
                time.sleep(wait / 1000)  # outside the lock: other processes may check meanwhile
        except RedisError:
            log.warning("tally throttle: Redis unreachable, throttling in this process only")
            with self._lock:
                self._drivers.discard(key)
            super().touch(key)


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
