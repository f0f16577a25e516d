"""The WSGI application `ftbot serve` runs: Slack's requests, health and metrics.

`POST /slack/events` takes events, slash commands and interactivity (Bolt's default path). Its body
is bounded and checked before anything parses it: over `MAX_BODY_BYTES` is answered 413 without
being read, and a missing, wrong or expired signature 401 before the body is decoded as a form or
JSON. Neither the body nor its ``response_url`` or token is ever logged.

`GET /healthz` says only ``ok`` or ``unhealthy`` (load balancers and probes need no more);
`GET /healthz/details` names what is wrong, and where events are worked on, for a request bearing
``FTBOT_HEALTH_TOKEN`` or, when no token is configured, for a request from this host that no proxy
forwarded. `GET /metrics` is for Prometheus.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Iterable, Sequence
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from prometheus_client import CONTENT_TYPE_LATEST
from redis import Redis
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest
from slack_bolt.adapter.wsgi.http_response import WsgiHttpResponse
from slack_bolt.request import BoltRequest
from slack_bolt.request.internals import build_context
from slack_sdk.signature import SignatureVerifier
from sqlalchemy.engine import Engine

from bot.handoff import Handoff
from bot.inbox import REPLAY_HEADER
from bot.metrics import ACK_SECONDS, REQUESTS, exposition
from runner.core.config import Settings
from runner.core.db import check_health
from runner.core.redaction import redact

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

log = logging.getLogger(__name__)

JSON: dict[str, Sequence[str]] = {"content-type": ["application/json"]}
METRICS: dict[str, Sequence[str]] = {"content-type": [CONTENT_TYPE_LATEST]}
# Slack's largest requests (a modal's state, a message with its blocks) are tens of kilobytes.
MAX_BODY_BYTES = 1024 * 1024
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


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
    """Bolt's WSGI handler with bounded, verified-first Slack requests, health and metrics."""

    def __init__(
        self,
        app: App,
        engine: Engine,
        path: str = "/slack/events",
        redis: Redis | None = None,
        queues: tuple[str, ...] = (),
        *,
        settings: Settings,
        handoff: Handoff | None = None,
    ) -> None:
        super().__init__(app, path)
        self.engine = engine
        self.handoff = handoff  # events go to event workers while any is alive (bot.handoff)
        self.redis, self.queues = redis, queues
        self.verifier = SignatureVerifier(settings.slack_signing_secret or "")
        self.health_token = settings.ftbot_health_token

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = WsgiHttpRequest(environ)
        if not request.protocol.startswith("HTTP"):
            response = _plain(400, "Bad Request")
        elif request.method == "POST" and request.path == self.path:
            response = self._slack(request, environ)
        else:
            response = self._get_http_response(request)
        start_response(response.status, response.get_headers())
        return response.get_body()

    def _slack(self, request: WsgiHttpRequest, environ: WSGIEnvironment) -> WsgiHttpResponse:
        began = time.perf_counter()
        raw = _bounded_body(environ)
        if raw is None:
            REQUESTS.labels(kind="oversized", status="413").inc()
            log.warning(
                "refused an oversized request", extra={"content_length": environ.get("CONTENT_LENGTH")}
            )
            return _plain(413, "Request Entity Too Large")
        headers = request.get_headers()
        timestamp = _header(headers, "x-slack-request-timestamp")
        signature = _header(headers, "x-slack-signature")
        try:
            body: str | None = raw.decode("utf-8")
        except UnicodeDecodeError:
            body = None
        if body is None or not timestamp.isdigit() or not self.verifier.is_valid(body, timestamp, signature):
            REQUESTS.labels(kind="unverified", status="401").inc()
            log.info(
                "refused a request whose signature is missing, wrong or expired",
                extra={"request_timestamp": timestamp[:20], "bytes": len(raw)},
            )
            return WsgiHttpResponse(status=401, headers=JSON, body=json.dumps({"error": "invalid request"}))
        if self.handoff is not None and body.startswith("{") and self.handoff.available():
            document = _json_object(body)
            if document is not None:
                answered, event_id = self.handoff.take(self.engine, document, body)
                if answered:
                    kind = request_kind(document)
                    ACK_SECONDS.labels(kind=kind).observe(time.perf_counter() - began)
                    REQUESTS.labels(kind=kind, status="200").inc()
                    return WsgiHttpResponse(status=200, headers={}, body="")
                if event_id is not None:  # recorded, but no worker could be told: run it here
                    headers = {**headers, REPLAY_HEADER: [event_id]}
        slack_request = SlackRequest(body=body, query=request.query_string, headers=headers)
        response = self.app.dispatch(slack_request)
        kind = request_kind(slack_request.body)
        ACK_SECONDS.labels(kind=kind).observe(time.perf_counter() - began)
        REQUESTS.labels(kind=kind, status=str(response.status)).inc()
        return WsgiHttpResponse(status=response.status, headers=response.headers, body=response.body)

    def _get_http_response(self, request: WsgiHttpRequest) -> WsgiHttpResponse:
        if request.method == "GET" and request.path == "/metrics":
            scraped = exposition(self.engine, self.redis, self.queues)
            return WsgiHttpResponse(status=200, headers=METRICS, body=scraped.decode())
        if request.method == "GET" and request.path == "/healthz":
            error = check_health(self.engine)
            health = {"status": "ok" if error is None else "unhealthy"}
            return WsgiHttpResponse(
                status=200 if error is None else 503, headers=JSON, body=json.dumps(health)
            )
        if request.method == "GET" and request.path == "/healthz/details":
            if not self._may_see_details(request.environ):
                return _plain(404, "Not Found")
            error = check_health(self.engine)
            details = {"status": "ok" if error is None else "unhealthy", "database": redact(error or "ok")}
            if self.handoff is not None:  # where this process sends events now (bot.handoff)
                details["events"] = "event workers" if self.handoff.available() else "this process"
            return WsgiHttpResponse(
                status=200 if error is None else 503, headers=JSON, body=json.dumps(details)
            )
        return super()._get_http_response(request)

    def _may_see_details(self, environ: WSGIEnvironment) -> bool:
        if self.health_token:
            given = str(environ.get("HTTP_AUTHORIZATION") or "")
            return hmac.compare_digest(given.encode(), f"Bearer {self.health_token}".encode())
        forwarded = any(environ.get(name) for name in FORWARDING_HEADERS)
        return environ.get("REMOTE_ADDR") in LOOPBACK and not forwarded


def _plain(status: int, text: str) -> WsgiHttpResponse:
    return WsgiHttpResponse(status=status, headers={"content-type": ["text/plain;charset=utf-8"]}, body=text)


def _json_object(body: str) -> dict[str, Any] | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _header(headers: dict[str, Any], name: str) -> str:
    value = headers.get(name) or ""
    return str(value[0] if isinstance(value, list | tuple) and value else value)


def _bounded_body(environ: WSGIEnvironment) -> bytes | None:
    """The request body, or None when it is over `MAX_BODY_BYTES` (then it is not read at all when
    its declared length says so, and read no further than the limit when it is chunked)."""
    stream: IO[bytes] | None = environ.get("wsgi.input")
    declared = str(environ.get("CONTENT_LENGTH") or "").strip()
    if stream is None:
        return b""
    if declared:
        length = int(declared) if declared.isdigit() else MAX_BODY_BYTES + 1
        if length > MAX_BODY_BYTES:
            return None
        return stream.read(length)
    if "chunked" not in str(environ.get("HTTP_TRANSFER_ENCODING") or "").lower():
        return b""  # no length and not chunked: HTTP says there is no body
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_BODY_BYTES:
        chunk = stream.read(64 * 1024)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    return None
