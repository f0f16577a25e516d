"""The live tally on each project's root message, refreshed with chat.update but throttled.

Slack allows chat.update roughly once a second per channel before answering 429, and a burst of
reactions arrives far faster. Each project is refreshed at most once per interval: the first change
after a quiet spell refreshes at once, later ones within the interval share one trailing refresh
that renders the state as it is then, so the last change is always shown. Refreshes of one
project never overlap, so Slack receives them in order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

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
            if wait > 0:
                self._scheduled.add(key)
                timer = threading.Timer(wait, self._fire, args=(key,))
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
