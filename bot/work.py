"""Acks never wait on the Web API: listeners ack on the request thread and work on a bounded pool.

Slack wants every request answered within 3 seconds, and a Web API call can take far longer: a
rate-limited call sleeps its ``Retry-After`` (and Slack allows ``conversations.replies`` once a
minute to apps outside the Marketplace). Were acks and Slack calls to share one pool, calls
sleeping on rate limits would keep later requests from being acked at all.

So the app runs with ``process_before_response=True`` (Bolt runs each listener on the request
thread and answers Slack when it returns) and every listener is registered through `deferred`:

* on the request thread, the listener's ack function (or a plain ``ack()``) answers Slack. It
  never calls the Web API; an ack function may read the database (a modal's validation) and may
  decide that no work follows (by returning False);
* the rest, the listener's work, is handed to the app's work pool (`bot.inbox.InboxExecutor`,
  ``FTBOT_WORK_THREADS`` threads): the Slack calls happen there, within the retry budget of
  `runner.slack.client`. An event is marked done when its work returns and failed (for replay)
  when it raises, as `bot.inbox` describes.
* The pool is bounded (``FTBOT_WORK_QUEUE``). When it is full, no work is started: a slash command
  or a modal is told at once, in its ack, to try again; a button's or shortcut's person is told
  through its ``response_url``; an event is acknowledged and left pending, and the inbox replays it
  as soon as the pool has room again (`bot.inbox`).

Work functions take the same arguments Bolt gives listeners (by name: ``body``, ``client``,
``context``, ``respond``, …) and run with the very request Bolt parsed. One that still calls
``ack()`` changes nothing: Slack has had its answer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from slack_bolt import BoltContext, BoltRequest
from slack_bolt.kwargs_injection import build_required_kwargs
from slack_bolt.util.utils import get_arg_names_of_callable

from bot.deps import deps_of
from bot.http import request_kind
from bot.metrics import WORK_REFUSED

log = logging.getLogger(__name__)

BUSY = "ftbot is very busy right now (Slack is slowing it down). Please try again in a minute."
# Busy notices to a response_url go out on threads of their own (never on the request thread); at
# most this many at once, the rest are only logged.
MAX_BUSY_NOTICES = 4
_busy_notices = threading.BoundedSemaphore(MAX_BUSY_NOTICES)

Listener = Callable[..., None]


def _call(function: Callable[..., Any], request: BoltRequest) -> Any:
    """Call a listener-like function with the arguments Bolt would give it, by name."""
    kwargs = build_required_kwargs(
        logger=log,
        required_arg_names=get_arg_names_of_callable(function),
        request=request,
        response=None,
        this_func=function,
        next_keys_required=False,
    )
    return function(**kwargs)


def _first_input_block(body: dict[str, Any]) -> str | None:
    blocks = (body.get("view") or {}).get("blocks") or []
    return next((b.get("block_id") for b in blocks if b.get("type") == "input" and b.get("block_id")), None)


def _tell_busy(context: BoltContext) -> None:
    respond = context.respond
    if respond is None or not _busy_notices.acquire(blocking=False):
        return

    def send() -> None:
        try:
            respond(text=BUSY, response_type="ephemeral", replace_original=False)
        except Exception:
            log.warning("could not tell a person that ftbot is busy", exc_info=True)
        finally:
            _busy_notices.release()

    threading.Thread(target=send, name="ftbot-busy-notice", daemon=True).start()


def _refuse_busy(request: BoltRequest, context: BoltContext) -> None:
    """The pool is full: answer now, start nothing (see the module docstring)."""
    body = request.body
    kind = request_kind(body)
    WORK_REFUSED.labels(kind=kind).inc()
    log.warning("work pool full: request refused", extra={"request_kind": kind})
    ack = context.ack
    if body.get("type") == "event_callback":
        deps_of(context).pool.defer()  # acknowledged by Bolt; replayed once the pool has room
        return
    if body.get("command"):
        ack(response_type="ephemeral", text=BUSY)
    elif body.get("type") == "view_submission" and (block_id := _first_input_block(body)):
        ack(response_action="errors", errors={block_id: BUSY})
    else:
        ack()
        _tell_busy(context)


def deferred(work: Listener, ack: Callable[..., bool | None] | None = None) -> Listener:
    """A Bolt listener that acks on the request thread and leaves `work` to the work pool.

    Args:
        work: the listener's work (its Slack calls among it); arguments by name, as Bolt gives them.
        ack: answers Slack (it must call ``ack(...)``) without calling the Web API; it may return
            False when no work should follow (invalid input it has already reported). Default: a
            plain ``ack()``.
    """

    def listener(request: BoltRequest, context: BoltContext) -> None:
        pool = deps_of(context).pool
        if pool.saturated:
            _refuse_busy(request, context)
            return
        if ack is None:
            context.ack()
        elif _call(ack, request) is False:
            return
        runner = context.listener_runner

        def run() -> None:
            try:
                _call(work, request)
            except Exception as error:  # the app's error handler logs it and marks the event failed
                runner.listener_error_handler.handle(error=error, request=request, response=None)

        pool.submit(run)  # on this thread: the pool takes the event id being dispatched

    listener.__name__ = listener.__qualname__ = getattr(work, "__name__", "deferred")
    return listener
