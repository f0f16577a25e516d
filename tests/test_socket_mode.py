"""`ftbot serve --socket` end to end: the real process, slack_sdk's builtin Socket Mode client, Slack's
side played by the emulator (``apps.connections.open``, Web API) and a local WebSocket server
(``tests/socket_mode_server.py``: hello, envelopes, acks)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from bot.listeners.commands import help_payload
from tests.conftest import BOT_TOKEN
from tests.interview_driver import question_message
from tests.slack_emulator import SlackEmulator
from tests.socket_mode_server import SocketModeServer

APP_TOKEN = "xapp-1-A0001-1-socketmodetest"
ROOT = Path(__file__).resolve().parent.parent
SLACK_VARS = (
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "SLACK_CLIENT_ID",
    "SLACK_CLIENT_SECRET",
    "SLACK_API_URL",
    "DATABASE_URL",
)


@pytest.fixture
def server(emulator: SlackEmulator) -> Iterator[SocketModeServer]:
    """Slack's Socket Mode endpoint; the emulator hands out its URLs to the app-level token."""
    emulator.add_app_token(APP_TOKEN)
    with SocketModeServer(emulator, app_id=emulator.app_id) as running:
        emulator.socket_mode_url = running.new_url
        yield running


@dataclass
class Ftbot:
    """`ftbot serve --socket` as a subprocess, its output in a file."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self, lines: int = 30) -> str:
        """The last `lines` lines of its output (for assertion messages)."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "ftbot output:\n" + "\n".join(text.splitlines()[-lines:])

    def exited(self) -> bool:
        return self.process.poll() is not None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_ftbot(tmp_path: Path, emulator: SlackEmulator, server: SocketModeServer, app_token: str) -> Ftbot:
    base = {k: v for k, v in os.environ.items() if k not in SLACK_VARS}
    env = {
        **base,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_APP_TOKEN": app_token,
        "SLACK_API_URL": emulator.base_url,
        "FTBOT_DATA_DIR": str(tmp_path / "data"),
        "PYTHONIOENCODING": "utf-8",
    }
    log_path = tmp_path / "ftbot-serve.log"
    with log_path.open("wb") as log:  # the child keeps its own handle
        process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve", "--socket"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def wake_waiters_on_exit() -> None:
        process.wait()
        server.wake()

    threading.Thread(target=wake_waiters_on_exit, daemon=True).start()
    return Ftbot(process, log_path)


@pytest.fixture
def ftbot(tmp_path: Path, emulator: SlackEmulator, server: SocketModeServer) -> Iterator[Ftbot]:
    running = start_ftbot(tmp_path, emulator, server, APP_TOKEN)
    yield running
    running.stop()


@pytest.mark.slow
def test_serve_socket_acks_commands_and_handles_a_mention(
    ftbot: Ftbot, server: SocketModeServer, emulator: SlackEmulator
) -> None:
    server.wait_for(lambda: server.current() or ftbot.exited(), timeout=30, what="ftbot to connect")
    connection = server.current()
    assert connection is not None and not ftbot.exited(), ftbot.log()
    # the URL came from apps.connections.open, authenticated with the app-level token
    opened = emulator.calls_to("apps.connections.open")
    assert len(opened) == 1 and opened[0].headers.get("Authorization") == f"Bearer {APP_TOKEN}"

    # /finetune history: an empty ack at once, then the answer as an ephemeral message (bot token)
    envelopes = [envelope := server.slash_command("history")]
    assert server.wait_for_ack(envelope) == {"envelope_id": envelope}, ftbot.log()
    ephemeral = emulator.wait_for(lambda: emulator.ephemerals("CGENERAL"), what="the history ephemeral")[0]
    assert ephemeral["user"] == "UALICE" and ephemeral["text"].startswith("Readiness interviews")
    assert emulator.last("chat.postEphemeral").headers.get("Authorization") == f"Bearer {BOT_TOKEN}"

    # the help, and an unknown subcommand, come back in the ack itself (accepts_response_payload)
    envelopes.append(envelope := server.slash_command("help"))
    assert server.wait_for_ack(envelope) == {"envelope_id": envelope, "payload": help_payload()}, ftbot.log()
    envelopes.append(envelope := server.slash_command("nonsense"))
    assert server.wait_for_ack(envelope) == {
        "envelope_id": envelope,
        "payload": help_payload(unknown="nonsense"),
    }, ftbot.log()

    # @ftbot in a channel: the event is acked and the interview's first question goes into its thread
    mention = emulator.post_user_message(
        "CGENERAL", "<@UBOT> should we fine-tune our ticket router?", "UALICE"
    )
    event = {
        "type": "app_mention",
        "user": "UALICE",
        "text": mention["text"],
        "ts": mention["ts"],
        "channel": "CGENERAL",
    }
    envelopes.append(envelope := server.event(event))
    assert server.wait_for_ack(envelope) == {"envelope_id": envelope}, ftbot.log()
    question = emulator.wait_for(
        lambda: question_message(emulator, "CGENERAL", mention["ts"]), what="the first question"
    )
    assert question["thread_ts"] == mention["ts"] and question["user"] == emulator.bot_user_id

    # every envelope acked exactly once, over one connection that the client kept alive with pings
    assert sorted(str(m.get("envelope_id")) for m in server.received()) == sorted(envelopes)
    assert len(server.connections) == 1 and connection.open and connection.pings >= 1
    assert server.errors == []
    assert not ftbot.exited(), ftbot.log()


@pytest.mark.slow
def test_serve_socket_with_a_bot_token_as_app_token_exits(
    tmp_path: Path, emulator: SlackEmulator, server: SocketModeServer
) -> None:
    ftbot = start_ftbot(tmp_path, emulator, server, BOT_TOKEN)
    try:
        server.wait_for(lambda: ftbot.exited() or server.connections, timeout=30, what="ftbot to give up")
    finally:
        ftbot.stop()
    assert ftbot.process.returncode not in (0, None, -signal.SIGTERM), ftbot.log()
    assert "not_allowed_token_type" in ftbot.log()
    assert server.connections == [] and server.errors == []


# ---------------------------------------------------------------- the emulator and server themselves


@pytest.fixture
def web(emulator: SlackEmulator) -> WebClient:
    return WebClient(token=BOT_TOKEN, base_url=emulator.base_url, retry_handlers=[])


def _error(call: Any) -> str:
    with pytest.raises(SlackApiError) as excinfo:
        call()
    return str(excinfo.value.response["error"])


def test_connections_open_takes_only_the_app_level_token(
    emulator: SlackEmulator, server: SocketModeServer, web: WebClient
) -> None:
    url = web.apps_connections_open(app_token=APP_TOKEN)["url"]
    assert url.startswith(f"ws://127.0.0.1:{server.port}/link/?ticket=")
    assert web.apps_connections_open(app_token=APP_TOKEN)["url"] != url  # a fresh URL each time
    assert _error(lambda: web.apps_connections_open(app_token=BOT_TOKEN)) == "not_allowed_token_type"
    assert _error(lambda: web.apps_connections_open(app_token="xapp-1-unknown")) == "invalid_auth"
    as_app = WebClient(token=APP_TOKEN, base_url=emulator.base_url, retry_handlers=[])
    assert _error(lambda: as_app.chat_postMessage(channel="CGENERAL", text="hi")) == "not_allowed_token_type"
    assert _error(lambda: as_app.auth_test()) == "not_allowed_token_type"
    anonymous = WebClient(base_url=emulator.base_url, retry_handlers=[])
    assert _error(lambda: anonymous.api_call("apps.connections.open")) == "not_authed"


def test_connections_open_without_a_socket_mode_server() -> None:
    with SlackEmulator(bot_token=BOT_TOKEN, app_token=APP_TOKEN) as emulator:
        client = WebClient(token=BOT_TOKEN, base_url=emulator.base_url, retry_handlers=[])
        assert _error(lambda: client.apps_connections_open(app_token=APP_TOKEN)) == "internal_error"
        emulator.socket_mode_url = "ws://127.0.0.1:9/link/?ticket=fixed"
        assert client.apps_connections_open(app_token=APP_TOKEN)["url"] == emulator.socket_mode_url


def test_sdk_client_round_trip_and_single_use_urls(
    emulator: SlackEmulator, server: SocketModeServer, web: WebClient
) -> None:
    def ack(client: Any, request: SocketModeRequest) -> None:
        response = SocketModeResponse(request.envelope_id, {"text": f"got {request.payload['text']}"})
        client.send_socket_mode_response(response)

    client = SocketModeClient(app_token=APP_TOKEN, web_client=web, auto_reconnect_enabled=False)
    client.socket_mode_request_listeners.append(ack)
    try:
        client.connect()
        connection = server.wait_for_connection()
        server.wait_for(lambda: connection.pings, what="the client's first ping")  # answered with a pong
        envelope = server.slash_command("x" * 3000)  # a frame with a 16-bit length
        assert server.wait_for_ack(envelope) == {
            "envelope_id": envelope,
            "payload": {"text": "got " + "x" * 3000},
        }
        connection.close()  # as Slack does before it refreshes a connection
        server.wait_for(lambda: connection.ended, what="the client to drop the connection")
    finally:
        client.close()
    assert server.errors == []

    # the URL the client used is spent: a second handshake with it is refused
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        raw.sendall(
            f"GET /link/?ticket={connection.ticket} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        assert raw.recv(1024).startswith(b"HTTP/1.1 401 ")
    assert len(server.errors) == 1 and "used ticket" in server.errors[0]
