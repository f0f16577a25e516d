"""The WSGI application `ftbot serve` runs: Slack's requests, health and metrics.

`POST /slack/events` takes events, slash commands and interactivity (Bolt's default path);
`GET /healthz` reports whether the database answers; `GET /metrics` is for Prometheus.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl

from prometheus_client import CONTENT_TYPE_LATEST
from redis import Redis
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest
from slack_bolt.adapter.wsgi.http_response import WsgiHttpResponse
from slack_bolt.request import BoltRequest
from slack_bolt.request.internals import build_context
from slack_bolt.response import BoltResponse
from sqlalchemy.engine import Engine

from bot.metrics import ACK_SECONDS, REQUESTS, exposition
from runner.core.db import check_health

JSON: dict[str, Sequence[str]] = {"content-type": ["application/json"]}
METRICS: dict[str, Sequence[str]] = {"content-type": [CONTENT_TYPE_LATEST]}


class SlackRequest(BoltRequest):
    """A BoltRequest that also parses form bodies whose text merely contains the word "payload".

    Bolt takes any form body containing "payload" for an interactivity payload; a slash command
    such as ``/finetune help payload`` then parses to ``{}`` and reaches no listener (404). When no
    ``payload`` field is present, the body is the plain form it looks like.
    """

    def __init__(self, *, body: str, query: str, headers: dict[str, Any]) -> None:
        super().__init__(body=body, query=query, headers=headers)
        if not self.body and body and not body.lstrip().startswith("{"):
            fields = dict(parse_qsl(body, keep_blank_values=True))
            if "payload" not in fields:
                self.body = fields
                self.context = build_context(self.context, self.body)


def request_kind(body: dict[str, Any]) -> str:
    """A low-cardinality name for a Slack request: ``event:reaction_added``, ``block_actions``, …"""
    if body.get("type") == "event_callback":
        return f"event:{(body.get('event') or {}).get('type', '?')}"
    if body.get("command"):
        return "command"
    return str(body.get("type") or "unknown")


class FtbotRequestHandler(SlackRequestHandler):
    """Bolt's WSGI handler plus ``/healthz`` and ``/metrics``, with `SlackRequest` parsing."""

    def __init__(
        self,
        app: App,
        engine: Engine,
        path: str = "/slack/events",
        redis: Redis | None = None,
        queues: tuple[str, ...] = (),
    ) -> None:
        super().__init__(app, path)
        self.engine = engine
        self.redis, self.queues = redis, queues

    def dispatch(self, request: WsgiHttpRequest) -> BoltResponse:
        began = time.perf_counter()
        slack_request = SlackRequest(
            body=request.get_body(), query=request.query_string, headers=request.get_headers()
        )
        response = self.app.dispatch(slack_request)
        kind = request_kind(slack_request.body)
        ACK_SECONDS.labels(kind=kind).observe(time.perf_counter() - began)
        REQUESTS.labels(kind=kind, status=str(response.status)).inc()
        return response

    def _get_http_response(self, request: WsgiHttpRequest) -> WsgiHttpResponse:
        if request.method == "GET" and request.path == "/metrics":
            scraped = exposition(self.engine, self.redis, self.queues)
            return WsgiHttpResponse(status=200, headers=METRICS, body=scraped.decode())
        if request.method == "GET" and request.path == "/healthz":
            error = check_health(self.engine)
            health = {"status": "ok" if error is None else "unhealthy", "database": error or "ok"}
            return WsgiHttpResponse(
                status=200 if error is None else 503, headers=JSON, body=json.dumps(health)
            )
        return super()._get_http_response(request)
