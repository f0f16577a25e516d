"""Bounded input at the HTTP edge of `ftbot serve`: big bodies refused before they are read, the
signature checked before the body is parsed, nothing of a refused request in the log, and a health
check that tells the world only "ok" or "unhealthy"."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import make_server

import pytest
from slack_sdk import WebClient

from bot.app import build_app
from bot.http import MAX_BODY_BYTES, FtbotRequestHandler
from runner.core.db import make_engine
from tests.conftest import BOT_TOKEN, SIGNING_SECRET, _QuietHandler, _ThreadingWSGIServer
from tests.serve_support import Served, serve
from tests.slack_client import SlackSide

MARKERS = ("MARKER-typed-text", "MARKER-response-url", "MARKER-verification-token")


@pytest.fixture
def served(tmp_path, emulator, redis_url) -> Iterator[Served]:
    env = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": emulator.base_url,
        "FTBOT_DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": redis_url,
    }
    with serve(env, tmp_path / "serve.log") as running:
        yield running


def raw_request(url: str, head: str, body_chunks: list[bytes] = ()) -> tuple[int, bytes]:
    """Send a request by hand (so the body can be withheld or chunked) and read the status line."""
    parts = urllib.parse.urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as conn:
        conn.sendall(head.encode())
        try:
            for chunk in body_chunks:
                conn.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed without reading the rest: what it should do
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = conn.recv(65536)
            if not data:
                break
            answer += data
    return int(answer.split(b" ", 2)[1]), answer


def slash_form(text: str, **fields: str) -> str:
    form = {
        "token": "legacy-MARKER-verification-token",
        "team_id": "T0001",
        "channel_id": "CGENERAL",
        "user_id": "UALICE",
        "command": "/finetune",
        "text": text,
        "response_url": "https://hooks.slack.com/commands/T0001/1/MARKER-response-url",
        "trigger_id": "1.2.3",
        **fields,
    }
    return urllib.parse.urlencode(form)


def test_a_body_over_one_megabyte_is_refused_before_it_is_read(served, emulator):
    # 64 MB announced and never sent: the answer comes without the server waiting for it.
    head = (
        "POST /slack/events HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n"
        f"Content-Length: {64 * 1024 * 1024}\r\n\r\n"
    )
    status, _ = raw_request(served.url, head)
    assert status == 413

    # No length announced (chunked): read only up to the limit.
    chunk = b"x" * (256 * 1024)
    chunks = [f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(8)] + [b"0\r\n\r\n"]
    head = "POST /slack/events HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n"
    status, _ = raw_request(served.url, head + "Transfer-Encoding: chunked\r\n\r\n", chunks)
    assert status == 413 and 8 * len(chunk) > MAX_BODY_BYTES

    # Just under the limit, signed: served as usual.
    slack = SlackSide(served.url + "/slack/events", SIGNING_SECRET, emulator)
    big = slack.post(slash_form("help " + "x" * 900_000), "application/x-www-form-urlencoded")
    assert big.status == 200
    assert "/finetune" in big.json()["text"]  # the help: a slash command's ack is shown to its person alone


def test_the_signature_comes_before_parsing_and_nothing_of_a_refused_request_is_logged(served, emulator):
    slack = SlackSide(served.url + "/slack/events", SIGNING_SECRET, emulator)
    form = slash_form("start MARKER-typed-text")
    # Unsigned and not even well-formed: refused for its signature, never parsed (no 500).
    broken = urllib.parse.urlencode({"payload": '{"type": "block_actions", MARKER-typed-text'})
    assert slack.post(broken, "application/x-www-form-urlencoded", signed=False).status == 401
    assert slack.post(form, "application/x-www-form-urlencoded", secret="forged-secret").status == 401
    # A stale slash command, correctly signed five minutes and more ago (a replay).
    stale = slack.post(form, "application/x-www-form-urlencoded", timestamp=int(time.time()) - 6 * 60)
    assert stale.status == 401
    assert (
        slack.post(
            form,
            "application/x-www-form-urlencoded",
            headers={"X-Slack-Request-Timestamp": "x"},
            signed=False,
        ).status
        == 401
    )
    log = served.log()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    refusals = [line for line in lines if "signature is missing, wrong or expired" in line["msg"]]
    assert len(refusals) == 4
    for marker in MARKERS:
        assert marker not in log, marker
    assert "hooks.slack.com" not in log and emulator.calls_to("chat.postMessage") == []


def _dead_database_bot(settings, emulator, **overrides: Any) -> tuple[str, Any]:
    """The bot's WSGI handler in this process, on a database that cannot be reached."""
    engine = make_engine("postgresql+psycopg://ftbot_prod_role:hunter22@127.0.0.1:1/ftbot_prod")
    settings = settings.model_copy(update=overrides)
    app = build_app(settings, engine, client=WebClient(token=BOT_TOKEN, base_url=emulator.base_url))
    server = make_server(
        "127.0.0.1",
        0,
        FtbotRequestHandler(app, engine, settings=settings),
        server_class=_ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_healthz_says_ok_or_unhealthy_and_the_details_need_a_token_or_this_host(served, settings, emulator):
    assert get(served.url + "/healthz") == (200, '{"status": "ok"}')
    status, details = get(served.url + "/healthz/details")
    assert status == 200 and json.loads(details) == {
        "status": "ok",
        "database": "ok",
        "events": "this process",
    }
    # Through a proxy on this host, a request is not local any more.
    assert get(served.url + "/healthz/details", {"X-Forwarded-For": "203.0.113.7"})[0] == 404

    url, server = _dead_database_bot(settings, emulator, ftbot_health_token="health-token-123456")
    try:
        status, body = get(url + "/healthz")
        assert (status, json.loads(body)) == (503, {"status": "unhealthy"})
        assert "ftbot_prod_role" not in body and "127.0.0.1" not in body
        assert get(url + "/healthz/details")[0] == 404  # a token is configured: this host is not enough
        assert get(url + "/healthz/details", {"Authorization": "Bearer wrong"})[0] == 404
        status, body = get(url + "/healthz/details", {"Authorization": "Bearer health-token-123456"})
        assert status == 503 and json.loads(body)["database"].startswith("OperationalError")
        assert "hunter22" not in body
    finally:
        server.shutdown()
        server.server_close()
