"""Event workers: the web process only acknowledges events, other processes do their work.

A burst of reactions is the bot's heaviest load, and in one process the listeners' work and the
acks share one interpreter lock: an ack waits its turn behind the votes being counted. With event
workers running (``ftbot event-worker``, or ``ftbot serve --event-workers N``), an Events API
request takes three steps in the web process and no more:

1. its signature is checked (`bot.http`, as for every request);
2. the event, body included, is recorded in the inbox as ``pending`` (`bot.inbox.record`; a
   redelivery is dropped by the primary key, as always);
3. its id is pushed on a Redis list, and Slack gets its 200.

An event worker pops the ids, reads the events still pending (one query for a batch) and runs
each through its own copy of the Bolt app, exactly as a replay does: the same middleware,
listeners, work pool, and the same marking of the event ``done`` or ``failed``. Its commits do
not wait for the disk (`runner.core.db.commit_without_waiting_for_disk`): all it writes can be
done again from the inbox, which the ack committed durably. Slack commands, buttons and modals
stay in the web process: their answers are the ack itself, and a modal must open within seconds
of the click.

The database stays the record: Redis only says that there is work. An event whose worker died,
or whose id Redis lost, is still pending, and the web process's sweeper replays it after
``FTBOT_EVENT_REPLAY_AFTER`` seconds (`bot.inbox`). Workers announce themselves in Redis every
few seconds; the web process hands events over only while one has done so within
``FTBOT_EVENT_WORKER_TTL`` seconds, and otherwise runs them itself, as it does with no workers at
all (the default) or when Redis cannot be reached. Ids queued when the last worker went away are
taken back by the sweeper (`take_back`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from slack_bolt import App, BoltRequest
from sqlalchemy import bindparam, select
from sqlalchemy.engine import Engine

from bot import inbox
from bot.metrics import EVENTS_HANDED_OVER
from runner.core.models import EventStatus, ProcessedEvent
from runner.data import textnorm

log = logging.getLogger(__name__)

QUEUE = "ftbot:events"  # event ids waiting for an event worker (LPUSH here, RPOP there: oldest first)
WORKERS = "ftbot:event-workers"  # worker id → the Redis server's time of its latest heartbeat
HEARTBEAT_EVERY = 2.0  # seconds between a worker's heartbeats
BATCH = 32  # event ids a worker takes at once

# Redis's own clock on both sides, so that the hosts' clocks need not agree.
_BEAT = "local t = redis.call('TIME') redis.call('ZADD', KEYS[1], t[1], ARGV[1]) return t[1]"
_ALIVE = "local t = redis.call('TIME') return redis.call('ZCOUNT', KEYS[1], t[1] - ARGV[1], '+inf')"

_EVENTS = ProcessedEvent.__table__  # type: ignore[attr-defined]
_PENDING = (
    select(_EVENTS.c.event_id, _EVENTS.c.body)
    .where(_EVENTS.c.event_id.in_(bindparam("events", expanding=True)))
    .where(_EVENTS.c.status == EventStatus.PENDING)
)


def doorbell_client(redis_url: str) -> Redis:
    """A Redis client for the ack path: it gives up within a quarter second, so that a Redis outage
    makes acks run their events in this process rather than wait."""
    return Redis.from_url(redis_url, socket_timeout=0.25, socket_connect_timeout=0.25)


class Handoff:
    """The web process's side: is a worker alive, and hand it an event recorded in the inbox."""

    def __init__(self, redis: Redis, ttl: float, *, check_every: float = 1.0) -> None:
        self.redis = redis
        self.ttl = ttl
        self.check_every = check_every
        self._alive = False
        self._checked = float("-inf")
        self._lock = threading.Lock()

    def available(self) -> bool:
        """Whether an event worker has announced itself within the TTL (asked of Redis at most once
        per ``check_every`` seconds; False while Redis cannot be reached)."""
        now = time.monotonic()
        if now - self._checked < self.check_every:
            return self._alive
        with self._lock:
            if now - self._checked < self.check_every:  # another thread just asked
                return self._alive
            try:
                alive = int(self.redis.eval(_ALIVE, 1, WORKERS, int(self.ttl))) > 0
            except RedisError as exc:
                alive = False
                log.debug("event workers unknown: Redis unreachable", extra={"error": str(exc)})
            if alive != self._alive:
                log.info("event workers %s", "found: events go there" if alive else "gone: events run here")
            self._alive, self._checked = alive, time.monotonic()
            return alive

    def ring(self, event_id: str) -> bool:
        """Queue `event_id` for a worker; False when Redis refused (then run the event here)."""
        try:
            self.redis.lpush(QUEUE, event_id)
        except RedisError as exc:
            log.warning("could not hand an event over; running it here", extra={"error": str(exc)})
            self._alive, self._checked = False, time.monotonic()  # stop trying for a moment
            return False
        EVENTS_HANDED_OVER.inc()
        return True

    def take(self, engine: Engine, body: dict[str, Any], raw: str) -> tuple[bool, str | None]:
        """Record and hand over an Events API request, if there is a worker to take it.

        `body` is the request's JSON document, `raw` its text. Returns (answered, event id):
        ``(True, _)`` when the event was handed over or is a redelivery (answer Slack 200, nothing
        more to do); ``(False, None)`` when it is not an event or no worker
        is alive (dispatch it as usual); ``(False, id)`` when it was recorded but could not be
        queued (dispatch it here as a replay of ``id``, so that it is not dropped as a redelivery).
        """
        event_id = inbox.event_id_of(body)
        if event_id is None or not self.available():
            return False, None
        if "\\u0000" in raw:  # JSON writes NUL only so (a raw one is invalid JSON)
            textnorm.scrub_nul(body)  # as the middleware does before anything stores a body
        if not inbox.record(engine, event_id, body):
            log.info("duplicate event dropped", extra={"event_id": event_id})
            return True, event_id
        if self.ring(event_id):
            return True, event_id
        return False, event_id

    def take_back(self, limit: int = 1_000) -> list[str]:
        """The ids still queued when no worker is alive (the caller replays them); none otherwise."""
        if self.available():
            return []
        try:
            taken = self.redis.rpop(QUEUE, limit)
        except RedisError:
            return []
        return [i.decode() if isinstance(i, bytes) else str(i) for i in taken or []]


class EventWorker:
    """An event worker's loop: pop event ids, read the events, run them through the Bolt app.

    The app is built as for Socket Mode (the bodies come from the database, not the network, so
    there is no signature to check) and its work pool is bounded as in the web process: the loop
    takes no more ids than the pool has room for.
    """

    def __init__(self, app: App, engine: Engine, redis: Redis, *, batch: int = BATCH) -> None:
        self.app, self.engine, self.redis, self.batch = app, engine, redis, batch
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stopped = threading.Event()
        pool = app.listener_runner.listener_executor
        assert isinstance(pool, inbox.InboxExecutor)
        self.pool = pool
        self.handled = 0

    def beat(self) -> None:
        self.redis.eval(_BEAT, 1, WORKERS, self.id)

    def _heartbeats(self) -> None:
        while not self.stopped.is_set():
            try:
                self.beat()
            except RedisError as exc:
                log.warning("event worker heartbeat failed", extra={"error": str(exc)})
            self.stopped.wait(HEARTBEAT_EVERY)

    def pop(self, timeout: float = 1.0) -> list[str]:
        """Up to `batch` queued ids (waiting at most `timeout` seconds for the first)."""
        first = self.redis.brpop([QUEUE], timeout=timeout)
        if first is None:
            return []
        ids: list[Any] = [first[1]]
        if self.batch > 1:
            more = self.redis.rpop(QUEUE, self.batch - 1)
            ids += more if isinstance(more, list) else []
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    def pending(self, event_ids: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
        """The events among `event_ids` still pending, with their bodies, in the order given.

        A read, not a claim: the queue hands each id to one worker (an id popped twice, once from
        here and once by the sweeper's replay, runs twice, which idempotent listeners allow). Not
        writing the row keeps the database's write-ahead log to one insert and one update per event.
        """
        with self.engine.connect() as connection:
            rows = connection.execute(_PENDING, {"events": list(event_ids)}).all()
        order = {event_id: n for n, event_id in enumerate(event_ids)}
        return sorted(((str(e), b) for e, b in rows if b is not None), key=lambda row: order[row[0]])

    def handle(self, event_id: str, body: dict[str, Any]) -> None:
        """Run one pending event through the app (its listener's work goes to the pool)."""
        request = BoltRequest(body=body, mode="socket_mode", headers={inbox.REPLAY_HEADER: event_id})
        response = self.app.dispatch(request)
        self.handled += 1
        if response.status == 404:  # no listener takes it: nothing left to do
            inbox.settle_done(self.engine, event_id)

    def run_once(self, timeout: float = 1.0) -> int:
        """Wait for room in the pool, take a batch, run it; the number of events run."""
        if not self.pool.wait_for_room(self.batch, timeout):
            return 0
        ids = self.pop(timeout)
        if not ids:
            return 0
        found = self.pending(ids)
        for event_id, body in found:
            self.handle(event_id, body)
        return len(found)

    def run(self) -> None:
        """Until `stop`: beat, pop, read and run; then let the pool finish what it holds."""
        heart = threading.Thread(target=self._heartbeats, name="ftbot-event-heartbeat", daemon=True)
        heart.start()
        log.info("event worker started", extra={"worker": self.id})
        try:
            while not self.stopped.is_set():
                try:
                    self.run_once()
                except RedisError as exc:
                    log.warning("event queue unreachable; retrying", extra={"error": str(exc)})
                    self.stopped.wait(1.0)
                except Exception:  # the database is away: the events stay pending, the sweeper has them
                    log.exception("event batch failed; its events are replayed later")
                    self.stopped.wait(1.0)
        finally:
            self.pool.shutdown(wait=True)
            with contextlib.suppress(RedisError):  # else its heartbeat expires instead
                self.redis.zrem(WORKERS, self.id)
            log.info("event worker stopped", extra={"worker": self.id, "events": self.handled})

    def stop(self, *_: Any) -> None:
        self.stopped.set()
