"""Slack's side of Socket Mode, for tests: a local WebSocket server (RFC 6455, stdlib only).

Slack's flow, reproduced here: the app calls ``apps.connections.open`` with its app-level token (the
emulator answers with `SocketModeServer.new_url`, a single-use ``ws://127.0.0.1:PORT/link/?ticket=...``),
opens a WebSocket to that URL, gets ``{"type": "hello", ...}``, then receives envelopes
``{"envelope_id", "type", "payload", "accepts_response_payload"}`` and acknowledges each with
``{"envelope_id": ..., "payload": {...}?}``. The server records every JSON message a client sends, so
a test can wait for the ack of the envelope it delivered (`wait_for_ack`).

Strict where a client could be wrong: the handshake (``Upgrade``, ``Connection``, version 13, a key, a
ticket it issued), client frames must be masked, reserved bits clear, control frames short and
unfragmented, text frames UTF-8 JSON objects. Each violation is recorded in ``errors`` (a test asserts
it stays empty) and closes the connection with 1002. Pings are answered with pongs, a close frame with
a close frame. Slack's ``disconnect`` messages (refresh warnings) are not sent.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import io
import json
import secrets
import socket
import socketserver
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR = 1000, 1002
MAX_MESSAGE = 1 << 20  # far above anything an ack carries; a bigger frame is a client bug
TEAM_ID = "T0001"


class ProtocolError(Exception):
    """The client broke RFC 6455 or Slack's Socket Mode protocol."""


@dataclass(eq=False)
class SocketModeConnection:
    """One accepted WebSocket: what the client sent, and a way to send it frames."""

    ticket: str
    headers: dict[str, str]
    sock: socket.socket
    received: list[dict[str, Any]] = field(default_factory=list)  # JSON messages, in arrival order
    pings: int = 0
    open: bool = True  # False once either side closes
    ended: bool = False  # the server is done with it (closed, dropped or refused mid-stream)
    _send_lock: threading.Lock = field(default_factory=threading.Lock)

    def send_frame(self, opcode: int, payload: bytes = b"") -> None:
        """One unmasked, unfragmented frame (servers never mask)."""
        size = len(payload)
        if size < 126:
            header = struct.pack("!BB", 0x80 | opcode, size)
        elif size < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 126, size)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 127, size)
        with self._send_lock:
            self.sock.sendall(header + payload)

    def send_json(self, message: dict[str, Any]) -> None:
        self.send_frame(OP_TEXT, json.dumps(message).encode())

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        if self.open:
            self.open = False
            with contextlib.suppress(OSError):  # the client may be gone already
                self.send_frame(OP_CLOSE, struct.pack("!H", code) + reason.encode())

    def abort(self) -> None:
        """Drop the TCP connection (wakes the reader blocked on it)."""
        self.open = False
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)


class SocketModeServer:
    """Slack's Socket Mode endpoint on a local port. Start it, give the emulator `new_url`.

    Args:
        emulator: the `SlackEmulator` whose ``response_url`` / ``new_trigger_id`` slash commands carry
            (optional; fixed placeholders without it).
        app_id: the app id in the URL, ``hello`` and payloads.
    """

    def __init__(self, emulator: Any = None, *, app_id: str = "A0001") -> None:
        self.emulator = emulator
        self.app_id = app_id
        self.connections: list[SocketModeConnection] = []
        self.errors: list[str] = []  # protocol violations and refused handshakes
        self._tickets: dict[str, bool] = {}  # ticket -> used
        self._changed = threading.Condition(threading.RLock())
        self._server: socketserver.ThreadingTCPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> SocketModeServer:
        if self._server is not None:
            return self
        handler = type("Handler", (_Handler,), {"owner": self})
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self._changed:
            connections = list(self.connections)
        for connection in connections:
            connection.abort()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> SocketModeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("SocketModeServer is not started")
        return int(self._server.server_address[1])

    def new_url(self) -> str:
        """A fresh single-use WebSocket URL, as ``apps.connections.open`` returns (``ws://``, not ``wss://``)."""
        ticket = secrets.token_hex(8)
        with self._changed:
            self._tickets[ticket] = False
        return f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={self.app_id}"

    # ------------------------------------------------------------------ waiting

    def wake(self) -> None:
        """Make `wait_for` re-check its condition now (e.g. the client process has exited)."""
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 15.0, what: str = "a condition") -> Any:
        """Block until ``predicate()`` is truthy (re-checked on every message, connection and `wake`)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (result := predicate()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"timed out waiting for {what}; received so far: {self.received()[-10:]}; "
                        f"errors: {self.errors}"
                    )
                self._changed.wait(remaining)
            return result

    def current(self) -> SocketModeConnection | None:
        """The newest open connection, if any."""
        with self._changed:
            return next((c for c in reversed(self.connections) if c.open), None)

    def wait_for_connection(self, timeout: float = 30.0) -> SocketModeConnection:
        """The newest open connection (``hello`` already sent), once a client has connected."""
        found: SocketModeConnection = self.wait_for(self.current, timeout, what="a Socket Mode connection")
        return found

    def received(self) -> list[dict[str, Any]]:
        """Every JSON message clients sent, oldest first (copies)."""
        with self._changed:
            return [copy.deepcopy(m) for c in self.connections for m in c.received]

    def ack_of(self, envelope_id: str) -> dict[str, Any] | None:
        return next((m for m in self.received() if m.get("envelope_id") == envelope_id), None)

    def wait_for_ack(self, envelope_id: str, timeout: float = 15.0) -> dict[str, Any]:
        """The client's acknowledgement of the envelope ``envelope_id``."""
        ack: dict[str, Any] = self.wait_for(
            lambda: self.ack_of(envelope_id), timeout, what=f"the ack of envelope {envelope_id}"
        )
        return ack

    # ------------------------------------------------------------------ what Slack sends

    def deliver(
        self,
        envelope_type: str,
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool,
        connection: SocketModeConnection | None = None,
        **extra: Any,
    ) -> str:
        """Send an envelope over ``connection`` (default: the newest open one); return its envelope id."""
        target = connection or self.current()
        if target is None:
            raise AssertionError("no open Socket Mode connection to deliver to")
        envelope_id = str(uuid.uuid4())
        target.send_json(
            {
                "envelope_id": envelope_id,
                "payload": payload,
                "type": envelope_type,
                "accepts_response_payload": accepts_response_payload,
                **extra,
            }
        )
        return envelope_id

    def slash_command(
        self,
        text: str,
        *,
        user: str = "UALICE",
        channel: str = "CGENERAL",
        command: str = "/finetune",
    ) -> str:
        """A slash command as Slack delivers it over Socket Mode (the form fields, all strings)."""
        n = secrets.token_hex(4)
        payload = {
            "token": "legacy-verification-token",
            "team_id": TEAM_ID,
            "team_domain": "acme",
            "channel_id": channel,
            "channel_name": "general",
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "api_app_id": self.app_id,
            "is_enterprise_install": "false",
            "response_url": (
                self.emulator.response_url(f"cmd-{n}")
                if self.emulator
                else f"https://hooks.slack.com/commands/{TEAM_ID}/{n}"
            ),
            "trigger_id": self.emulator.new_trigger_id() if self.emulator else f"{n}.{n}.{n}",
        }
        return self.deliver("slash_commands", payload, accepts_response_payload=True)

    def event(self, event: dict[str, Any], *, event_id: str | None = None, bot_user_id: str = "UBOT") -> str:
        """An Events API ``event_callback`` wrapped in an ``events_api`` envelope, as Slack sends it."""
        payload = {
            "token": "legacy-verification-token",
            "team_id": TEAM_ID,
            "api_app_id": self.app_id,
            "event": {"event_ts": event.get("ts", f"{time.time():.6f}"), **event},
            "type": "event_callback",
            "event_id": event_id or f"Ev{secrets.token_hex(5).upper()}",
            "event_time": int(time.time()),
            "authorizations": [
                {"enterprise_id": None, "team_id": TEAM_ID, "user_id": bot_user_id, "is_bot": True}
            ],
            "is_ext_shared_channel": False,
        }
        return self.deliver(
            "events_api", payload, accepts_response_payload=False, retry_attempt=0, retry_reason=""
        )

    # ------------------------------------------------------------------ used by the handler

    def _accept(self, ticket: str | None) -> bool:
        with self._changed:
            if ticket is None or self._tickets.get(ticket, True):
                return False
            self._tickets[ticket] = True
            return True

    def _add(self, connection: SocketModeConnection) -> None:
        with self._changed:
            self.connections.append(connection)
            self._changed.notify_all()

    def _record(self, connection: SocketModeConnection, message: dict[str, Any]) -> None:
        with self._changed:
            connection.received.append(message)
            self._changed.notify_all()

    def _pinged(self, connection: SocketModeConnection) -> None:
        with self._changed:
            connection.pings += 1
            self._changed.notify_all()

    def _error(self, error: str) -> None:
        with self._changed:
            self.errors.append(error)
            self._changed.notify_all()

    def _closed(self, connection: SocketModeConnection) -> None:
        with self._changed:
            connection.open = False
            connection.ended = True
            self._changed.notify_all()


class _Handler(socketserver.StreamRequestHandler):
    owner: SocketModeServer

    def handle(self) -> None:
        connection = self._handshake()
        if connection is None:
            return
        try:
            self._serve(connection)
        except ProtocolError as exc:
            self.owner._error(f"protocol error: {exc}")
            connection.close(CLOSE_PROTOCOL_ERROR, str(exc)[:100])
        except OSError:
            pass  # the client dropped the connection, or the server is stopping
        finally:
            self.owner._closed(connection)

    def _refuse(self, status: str, why: str) -> None:
        self.owner._error(f"handshake refused ({status}): {why}")
        self.wfile.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())

    def _handshake(self) -> SocketModeConnection | None:
        request_line = self.rfile.readline(8192).decode("latin-1").strip()
        headers: dict[str, str] = {}
        while line := self.rfile.readline(8192).decode("latin-1").strip():
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        method, _, rest = request_line.partition(" ")
        target = rest.rpartition(" ")[0]
        parts = urlsplit(target)
        key = headers.get("sec-websocket-key", "")
        if method != "GET" or parts.path != "/link/":
            self._refuse("404 Not Found", f"not a Socket Mode URL: {request_line!r}")
        elif headers.get("upgrade", "").lower() != "websocket" or "upgrade" not in [
            t.strip().lower() for t in headers.get("connection", "").split(",")
        ]:
            self._refuse("400 Bad Request", f"not a WebSocket upgrade: {headers}")
        elif headers.get("sec-websocket-version") != "13" or len(_b64decode(key)) != 16:
            self._refuse("400 Bad Request", f"bad Sec-WebSocket-Version/Key: {headers}")
        elif not self.owner._accept(parse_qs(parts.query).get("ticket", [None])[0]):
            self._refuse("401 Unauthorized", f"unknown or used ticket in {target!r}")
        else:
            accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            self.wfile.write(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
            )
            ticket = parse_qs(parts.query)["ticket"][0]
            connection = SocketModeConnection(ticket=ticket, headers=headers, sock=self.connection)
            connection.send_json(
                {
                    "type": "hello",
                    "num_connections": 1,
                    "debug_info": {
                        "host": "applink-local",
                        "build_number": 1,
                        "approximate_connection_time": 18060,
                    },
                    "connection_info": {"app_id": self.owner.app_id},
                }
            )
            self.owner._add(connection)
            return connection
        return None

    def _serve(self, connection: SocketModeConnection) -> None:
        message_opcode: int | None = None
        parts: list[bytes] = []
        while True:
            frame = _read_frame(self.rfile)
            if frame is None:
                return  # EOF: the client closed the TCP connection without a close frame
            fin, opcode, payload = frame
            if opcode == OP_PING:
                connection.send_frame(OP_PONG, payload)
                self.owner._pinged(connection)
            elif opcode == OP_PONG:
                pass
            elif opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else CLOSE_NORMAL
                connection.close(code)
                return
            elif opcode in (OP_TEXT, OP_BINARY):
                if message_opcode is not None:
                    raise ProtocolError("new data frame inside a fragmented message")
                message_opcode, parts = opcode, [payload]
            elif opcode == OP_CONTINUATION:
                if message_opcode is None:
                    raise ProtocolError("continuation frame without a message")
                parts.append(payload)
            else:
                raise ProtocolError(f"unknown opcode {opcode:#x}")
            if opcode in (OP_TEXT, OP_BINARY, OP_CONTINUATION) and fin:
                if message_opcode != OP_TEXT:
                    raise ProtocolError("binary message (Socket Mode speaks JSON text)")
                message_opcode = None
                self.owner._record(connection, _json_object(b"".join(parts)))


def _b64decode(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return b""


def _exact(stream: io.BufferedIOBase, n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise ProtocolError(f"connection closed inside a frame ({len(data)} of {n} bytes)")
    return data


def _read_frame(stream: io.BufferedIOBase) -> tuple[bool, int, bytes] | None:
    """(fin, opcode, unmasked payload) of the next client frame; None at a clean end of stream."""
    head = stream.read(2)
    if not head:
        return None
    if len(head) == 1:
        head += _exact(stream, 1)
    fin, rsv, opcode = bool(head[0] & 0x80), head[0] & 0x70, head[0] & 0x0F
    masked, length = bool(head[1] & 0x80), head[1] & 0x7F
    if length == 126:
        length = struct.unpack("!H", _exact(stream, 2))[0]
    elif length == 127:
        length = struct.unpack("!Q", _exact(stream, 8))[0]
    if rsv:
        raise ProtocolError("reserved bits set without a negotiated extension")
    if not masked:
        raise ProtocolError("client frame not masked (RFC 6455 section 5.1)")
    if opcode >= OP_CLOSE and (not fin or length > 125):
        raise ProtocolError("control frame fragmented or longer than 125 bytes")
    if length > MAX_MESSAGE:
        raise ProtocolError(f"frame of {length} bytes")
    key = _exact(stream, 4)
    data = _exact(stream, length)
    return fin, opcode, bytes(b ^ key[i % 4] for i, b in enumerate(data))


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        message = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"text message is not UTF-8 JSON: {data[:200]!r}") from exc
    if not isinstance(message, dict):
        raise ProtocolError(f"message is not a JSON object: {message!r}")
    return message
