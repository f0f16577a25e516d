"""A local emulator of the Slack Web API, for tests.

Point a real ``slack_sdk.WebClient(token=..., base_url=emu.base_url)`` at it. The method set and the
required arguments come from Slack's method descriptions in ``tests/slack_api_ref/methods`` (from
slack-ruby/slack-api-ref); a method without a file there answers HTTP 404 ``unknown_method``.

What it does
  * Serves ``/api/<method>`` as GET (query string), ``application/x-www-form-urlencoded`` POST,
    ``multipart/form-data`` POST and ``application/json`` POST. JSON-valued arguments sent inside a form
    or query string (``blocks``, ``view``, ``files``...) are decoded. As on Slack, a JSON body is only
    read for methods whose reference says ``json_input_supported``; other methods ignore it.
  * Auth: ``Authorization: Bearer`` header, or a ``token`` argument in a query string or form body (not in
    a JSON body, which Slack does not accept). No token: ``not_authed``; unknown token: ``invalid_auth``.
  * Socket Mode: ``apps.connections.open`` takes only an app-level token (``app_token=`` or
    ``add_app_token``; a bot or user token gets ``not_allowed_token_type``, as on Slack) and answers with
    ``socket_mode_url``: a string, or a callable giving a fresh URL per call, e.g.
    ``tests.socket_mode_server.SocketModeServer.new_url``. An app-level token is refused
    (``not_allowed_token_type``) by every other method.
  * OAuth scopes: a token created with ``scopes`` (the bot token's: ``SlackEmulator(scopes=...)``,
    another's: ``add_token(..., scopes=...)``) may call only the methods whose reference ``scope.bot``
    it holds; any other call is refused with ``missing_scope`` and Slack's ``needed`` / ``provided``
    fields. Where the reference lists one scope per kind of conversation (``channels:history``,
    ``groups:history``, ``im:history``, …) the one for the conversation named in the call is needed.
    ``scopes=None`` (the default) grants every scope.
  * Missing required arguments are refused with the error Slack gives (from the method's own error list,
    e.g. ``channel_not_found``, ``user_not_found``), else ``invalid_arguments`` plus
    ``response_metadata.messages``.
  * Posting (``chat.postMessage``, ``chat.postEphemeral``) in a channel the bot is not a member of is
    refused with ``not_in_channel`` (``invite`` adds it).
  * Keeps state: channels, users, user groups, messages and threads (Slack-like ``ts``), reactions,
    ephemeral messages, modal/home views, trigger ids (single use), uploaded files.
  * ``rate_limit_all(retry_after)`` answers every Web API call HTTP 429 until ``rate_limit_all(None)``
    (a workspace whose quota is spent); response URLs are not the Web API and keep answering.
  * Checks the Block Kit limits Slack enforces most often: blocks must be a list of objects with a
    ``type``; 50 blocks per message, 100 per view; unique ``block_id``; section text 3,000 and header text
    150 characters; modal title/submit/close 24 characters; ``private_metadata`` 3,000 characters; text
    over ``max_text_length`` (40,000) is ``msg_too_long``.
  * Records every API call (``calls``, ``calls_to``, ``last``) and injects faults (``fail_next``,
    ``rate_limit_next`` -> HTTP 429 with ``Retry-After``).

What it does not do
  * Token types (beyond app-level vs bot/user), Enterprise Grid, Slack Connect, archived channels,
    rate-limit tiers (faults are injected instead).
  * Full Block Kit schema validation (only the checks above); Slack's exact ``response_metadata`` wording.
  * Events: nothing is sent back to the app (no ``message`` / ``reaction_added`` events); over Socket Mode
    the test's WebSocket server delivers them (see ``tests/socket_mode_server.py``).
  * Trigger-id expiry by time (use ``expire_trigger_id``), modal stacks and ``push_limit_reached``,
    reactions on files, file objects' thumbnails/permalinks beyond a minimal shape.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import re
import secrets
import string
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

REF_METHODS_DIR = Path(__file__).parent / "slack_api_ref" / "methods"

# Arguments Slack takes as JSON when they arrive inside a form body or query string.
JSON_ARGS = frozenset({"blocks", "attachments", "view", "files", "metadata", "unfurled_attachments"})
MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_TEXT_LENGTH = 40_000
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_BLOCK_ID = 255
MAX_VIEW_TITLE = 24
MAX_PRIVATE_METADATA = 3000
MAX_CALLBACK_ID = 255
MAX_VIEW_BYTES = 250_000
# Methods that take an app-level token (xapp-...) instead of a bot or user token.
APP_TOKEN_METHODS = frozenset({"apps.connections.open"})
EMOJI_NAME = re.compile(r"^[a-z0-9_+\-']+(::skin-tone-[2-6])?$")
# Scopes that come one per kind of conversation: channels:history, groups:history, im:history, …
CONVERSATION_SCOPE = re.compile(r"^(channels|groups|im|mpim):([a-z.]+)$")
TS = re.compile(r"^\d+\.\d+$")

# Which of a method's own errors Slack gives when a required argument is missing, in order of preference.
MISSING_ARG_ERRORS: dict[str, tuple[str, ...]] = {
    "channel": ("channel_not_found",),
    "channel_id": ("channel_not_found",),
    "user": ("user_not_found",),
    "usergroup": ("no_such_subteam",),
    "ts": ("message_not_found", "thread_not_found"),
    "message_ts": ("message_not_found",),
    "timestamp": ("no_item_specified", "message_not_found"),
    "name": ("invalid_name",),
    "filename": ("missing_argument",),
    "length": ("missing_argument",),
}


@dataclass
class Call:
    """One API request as the emulator received it (arguments decoded)."""

    method: str
    args: dict[str, Any]
    http_method: str
    headers: dict[str, str]


@dataclass
class UploadedFile:
    """A file started with files.getUploadURLExternal; ``completed`` once files.completeUploadExternal ran."""

    id: str
    filename: str
    length: int
    title: str | None = None
    content: bytes | None = None
    alt_txt: str | None = None
    snippet_type: str | None = None
    channel_id: str | None = None
    channels: list[str] = field(default_factory=list)
    initial_comment: str | None = None
    thread_ts: str | None = None
    completed: bool = False


@dataclass
class Channel:
    id: str
    name: str
    members: set[str] | None  # None: everyone is a member
    is_private: bool = False
    is_im: bool = False
    user: str | None = None  # the other party of an IM
    created: int = 1_700_000_000
    topic: str = ""
    purpose: str = ""


class SlackError(Exception):
    """An ``ok: false`` answer."""

    def __init__(self, error: str, *messages: str, status: int = 200) -> None:
        super().__init__(error)
        self.error = error
        self.messages = list(messages)
        self.status = status
        self.extra: dict[str, Any] = {}  # more fields of the answer (missing_scope: needed, provided)

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": False, "error": self.error, **self.extra}
        if self.messages:
            out["response_metadata"] = {"messages": self.messages}
        return out


@dataclass
class MethodSpec:
    name: str
    http_method: str
    required: tuple[str, ...]
    errors: frozenset[str]
    json_input: bool
    bot_scopes: tuple[str, ...] = ()

    @classmethod
    def load(cls, path: Path) -> MethodSpec:
        data = json.loads(path.read_text(encoding="utf-8"))
        args = data.get("args") or {}
        required = tuple(a for a in args.get("required", []) if a != "token")
        return cls(
            name=path.stem,
            http_method=data.get("http_method", "POST"),
            required=required,
            errors=frozenset(data.get("errors") or {}),
            json_input=bool(data.get("json_input_supported")),
            bot_scopes=tuple((data.get("scope") or {}).get("bot") or ()),
        )

    def scopes_needed(self, conversation: str | None) -> tuple[str, ...]:
        """The scopes of which a bot token needs one for this call. `conversation` is the kind of
        conversation it names (``channels``, ``groups``, ``im``, ``mpim``), or None."""
        per_kind = [s for s in self.bot_scopes if CONVERSATION_SCOPE.match(s)]
        if conversation is not None and per_kind and len(per_kind) == len(self.bot_scopes):
            return tuple(s for s in per_kind if s.startswith(conversation + ":")) or tuple(per_kind)
        return self.bot_scopes

    def missing_arg_error(self, arg: str) -> SlackError:
        for candidate in MISSING_ARG_ERRORS.get(arg, ()):
            if candidate in self.errors:
                return SlackError(candidate)
        return SlackError("invalid_arguments", f"[ERROR] missing required field: {arg}")


@dataclass
class _Ctx:
    """What a handler gets: the decoded arguments and who is calling."""

    method: str
    args: dict[str, Any]
    user_id: str
    bot_id: str | None

    def get(self, name: str) -> Any:
        value = self.args.get(name)
        return None if value is None or value == "" else value

    def flag(self, name: str) -> bool:
        return _truthy(self.args.get(name))


@dataclass
class _Fault:
    error: str
    status: int = 200
    retry_after: int | None = None


def _truthy(value: Any) -> bool:
    return value is True or value == 1 or (isinstance(value, str) and value.lower() in ("1", "true"))


def _text_of(obj: Any) -> str:
    return obj.get("text", "") if isinstance(obj, dict) and isinstance(obj.get("text"), str) else ""


def _random_id(n: int = 5) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n))


def _cursor(offset: int) -> str:
    return base64.b64encode(f"offset:{offset}".encode()).decode()


def _offset(cursor: Any) -> int:
    if not cursor:
        return 0
    try:
        return int(base64.b64decode(str(cursor)).decode().split(":", 1)[1])
    except (ValueError, IndexError) as exc:
        raise SlackError("invalid_cursor") from exc


class SlackEmulator:
    """An in-process Slack Web API (see the module docstring). Start it, then use ``base_url``."""

    def __init__(
        self,
        bot_token: str = "xoxb-test",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        team_id: str = "T0001",
        *,
        team_name: str = "ftbot test",
        team_domain: str = "ftbot-test",
        bot_name: str = "ftbot",
        app_id: str = "A0001",
        max_text_length: int = MAX_TEXT_LENGTH,
        ref_dir: Path = REF_METHODS_DIR,
        app_token: str | None = None,
        socket_mode_url: str | Callable[[], str] | None = None,
        scopes: Iterable[str] | None = None,
    ) -> None:
        self.bot_token = bot_token
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.team_id = team_id
        self.team_name = team_name
        self.team_domain = team_domain
        self.bot_name = bot_name
        self.app_id = app_id
        self.max_text_length = max_text_length
        self.specs: dict[str, MethodSpec] = {
            p.stem: MethodSpec.load(p) for p in sorted(Path(ref_dir).glob("*.json"))
        }
        self.calls: list[Call] = []
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)  # notified after every call the emulator answers
        self._holds: dict[str, deque[threading.Event]] = {}
        self.held: list[str] = []  # methods whose call is (or was) held by `hold_next`
        self._responses: list[dict[str, Any]] = []  # what the app posted to response_url endpoints
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._faults: dict[str, deque[_Fault]] = {}
        self._counter = 0
        self._ts_micros = 0
        # identities by token: (user_id, bot_id or None)
        self._tokens: dict[str, tuple[str, str | None]] = {bot_token: (bot_user_id, bot_id)}
        # OAuth scopes by token; None: every scope
        self._scopes: dict[str, frozenset[str] | None] = {
            bot_token: frozenset(scopes) if scopes is not None else None
        }
        self._rate_limit_all: int | None = None  # Retry-After of a 429 to every call, while set
        self._app_tokens: set[str] = {app_token} if app_token else set()
        # What apps.connections.open answers: a WebSocket URL, or a callable minting one per call.
        self.socket_mode_url = socket_mode_url
        self._channels: dict[str, Channel] = {}
        self._messages: dict[str, list[dict[str, Any]]] = {}
        self._ephemerals: list[dict[str, Any]] = []
        self._users: dict[str, dict[str, Any]] = {}
        self._usergroups: dict[str, dict[str, Any]] = {}
        self._bots: dict[str, dict[str, Any]] = {}
        self._triggers: dict[str, str] = {}  # trigger id -> "fresh" | "used" | "expired"
        self._views: dict[str, dict[str, Any]] = {}
        self._home_views: dict[str, str] = {}  # user id -> view id
        self._files: dict[str, UploadedFile] = {}
        self._handlers: dict[str, Callable[[_Ctx], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "team.info": self._team_info,
            "bots.info": self._bots_info,
            "users.info": self._users_info,
            "usergroups.users.list": self._usergroups_users_list,
            "conversations.info": self._conversations_info,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "chat.postMessage": self._chat_post_message,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.getPermalink": self._chat_get_permalink,
            "reactions.add": self._reactions_add,
            "reactions.remove": self._reactions_remove,
            "reactions.get": self._reactions_get,
            "views.open": self._views_open,
            "views.push": self._views_push,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "files.getUploadURLExternal": self._files_get_upload_url_external,
            "files.completeUploadExternal": self._files_complete_upload_external,
            "apps.connections.open": self._apps_connections_open,
        }
        self.add_user(bot_user_id, bot_name, real_name=bot_name, is_bot=True)
        self._bots[bot_id] = {
            "id": bot_id,
            "deleted": False,
            "name": bot_name,
            "updated": 1_700_000_000,
            "app_id": app_id,
            "user_id": bot_user_id,
            "icons": {"image_36": "", "image_48": "", "image_72": ""},
        }

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> SlackEmulator:
        if self._server is not None:
            return self
        handler = type("Handler", (_RequestHandler,), {"emulator": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> SlackEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def root_url(self) -> str:
        if self._server is None:
            raise RuntimeError("SlackEmulator is not started")
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def base_url(self) -> str:
        """The ``base_url`` for ``slack_sdk.WebClient``, e.g. ``http://127.0.0.1:PORT/api/``."""
        return f"{self.root_url}/api/"

    # ------------------------------------------------------------------ setup helpers

    def add_token(
        self, token: str, user_id: str, bot_id: str | None = None, scopes: Iterable[str] | None = None
    ) -> None:
        """Accept another token (e.g. a user token ``xoxp-...``) acting as ``user_id``, holding
        ``scopes`` (None: every scope)."""
        with self._lock:
            self._tokens[token] = (user_id, bot_id)
            self._scopes[token] = frozenset(scopes) if scopes is not None else None

    def add_app_token(self, token: str) -> None:
        """Accept an app-level token (``xapp-...``): good for ``apps.connections.open`` and nothing else."""
        with self._lock:
            self._app_tokens.add(token)

    def add_channel(
        self,
        id: str,
        name: str,
        members: Iterable[str] | None = None,
        *,
        is_private: bool = False,
        topic: str = "",
        purpose: str = "",
    ) -> Channel:
        """Add a channel. ``members=None`` means everyone (the bot included) is a member; with a list,
        membership is enforced (private channel without the bot -> ``channel_not_found``, history without
        the bot -> ``not_in_channel``, ephemeral to a non-member -> ``user_not_in_channel``)."""
        with self._lock:
            channel = Channel(
                id=id,
                name=name,
                members=set(members) if members is not None else None,
                is_private=is_private,
                topic=topic,
                purpose=purpose,
            )
            self._channels[id] = channel
            self._messages.setdefault(id, [])
            return channel

    def add_user(
        self,
        id: str,
        name: str,
        real_name: str | None = None,
        is_bot: bool = False,
        **extra: Any,
    ) -> dict[str, Any]:
        """Add a user; ``extra`` keys (``tz``, ``is_admin``, ``profile``...) are merged into the user."""
        real = real_name if real_name is not None else name
        user: dict[str, Any] = {
            "id": id,
            "team_id": self.team_id,
            "name": name,
            "deleted": False,
            "color": "9f69e7",
            "real_name": real,
            "tz": "Europe/London",
            "tz_label": "Greenwich Mean Time",
            "tz_offset": 0,
            "profile": {
                "real_name": real,
                "real_name_normalized": real,
                "display_name": name,
                "display_name_normalized": name,
                "status_text": "",
                "status_emoji": "",
                "team": self.team_id,
            },
            "is_admin": False,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "updated": 1_700_000_000,
        }
        profile = extra.pop("profile", None)
        if profile:
            user["profile"].update(profile)
        user.update(extra)
        with self._lock:
            self._users[id] = user
        return user

    def invite(self, channel: str, user: str) -> None:
        """Add `user` (the bot, say) to a channel that has a member list (``/invite``)."""
        with self._lock:
            members = self._channels[channel].members
            if members is not None:
                members.add(user)

    def add_usergroup(self, id: str, handle: str, users: Iterable[str]) -> None:
        with self._lock:
            self._usergroups[id] = {"id": id, "handle": handle, "users": list(users)}

    def post_user_message(
        self, channel: str, text: str, user: str, *, thread_ts: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        """Store a message as if ``user`` had posted it (for the bot to read, react to or reply to)."""
        with self._lock:
            if channel not in self._channels:
                raise KeyError(f"unknown channel {channel!r}: add_channel() it first")
            ch = self._channels[channel]
            msg = self._store_message(ch, user=user, bot_id=None, text=text, thread_ts=thread_ts, **extra)
            return copy.deepcopy(msg)

    def new_trigger_id(self) -> str:
        """A fresh trigger id, as Slack puts in an interaction payload; usable once."""
        with self._lock:
            trigger = f"{self._next_counter()}.{self._counter * 7919}.{secrets.token_hex(16)}"
            self._triggers[trigger] = "fresh"
            return trigger

    def expire_trigger_id(self, trigger_id: str) -> None:
        """Make a trigger id answer ``expired_trigger_id`` (Slack expires them after 3 seconds)."""
        with self._lock:
            self._triggers[trigger_id] = "expired"

    # ------------------------------------------------------------------ fault injection

    def fail_next(self, method: str, error: str, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` answer ``{"ok": false, "error": error}``."""
        with self._lock:
            self._faults.setdefault(method, deque()).extend(_Fault(error) for _ in range(times))

    def rate_limit_next(self, method: str, times: int = 1, retry_after: int = 0) -> None:
        """The next ``times`` calls of ``method`` answer HTTP 429, ``Retry-After: retry_after``."""
        with self._lock:
            fault = _Fault("ratelimited", status=429, retry_after=retry_after)
            self._faults.setdefault(method, deque()).extend(fault for _ in range(times))

    def rate_limit_all(self, retry_after: int | None) -> None:
        """Every Web API call answers HTTP 429 with ``Retry-After: retry_after`` from now on, until
        called with None (response URLs keep answering: they are not the Web API)."""
        with self._lock:
            self._rate_limit_all = retry_after

    def hold_next(self, method: str) -> threading.Event:
        """The next call of ``method`` waits, unanswered, until the returned event is set (a slow
        Slack, or a bot process killed while it waits); the method's name is added to ``held``."""
        release = threading.Event()
        with self._lock:
            self._holds.setdefault(method, deque()).append(release)
        return release

    # ------------------------------------------------------------------ inspection

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def last(self, method: str) -> Call:
        calls = self.calls_to(method)
        if not calls:
            raise LookupError(f"no call to {method}; calls so far: {[c.method for c in self.calls]}")
        return calls[-1]

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """Every stored message of ``channel`` (replies included), oldest first, as copies."""
        with self._lock:
            return copy.deepcopy(self._messages.get(channel, []))

    def thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """The parent and replies of a thread, oldest first."""
        return [m for m in self.messages(channel) if m.get("thread_ts") == thread_ts or m["ts"] == thread_ts]

    def ephemerals(self, channel: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(e) for e in self._ephemerals if channel in (None, e["channel"])]

    def view(self, view_id: str) -> dict[str, Any] | None:
        with self._lock:
            view = self._views.get(view_id)
            return copy.deepcopy(view) if view else None

    def home_view(self, user_id: str) -> dict[str, Any] | None:
        """The Home tab last published for ``user_id``."""
        with self._lock:
            view_id = self._home_views.get(user_id)
            return self.view(view_id) if view_id else None

    def uploaded_files(self) -> list[UploadedFile]:
        """Files completed with files.completeUploadExternal, in upload order."""
        with self._lock:
            return [copy.deepcopy(f) for f in self._files.values() if f.completed]

    def uploaded_file(self, file_id: str) -> UploadedFile:
        with self._lock:
            return copy.deepcopy(self._files[file_id])

    def clear(self) -> None:
        """Forget recorded calls and pending faults (stored Slack state stays)."""
        with self._lock:
            self.calls.clear()
            self._faults.clear()

    # ------------------------------------------------------------------ request handling

    def handle_api(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Answer one API call (see `_answer_api`) and wake up anyone in `wait_for`."""
        method = args[0] if args else kwargs["method"]
        with self._changed:
            holds = self._holds.get(method)
            release = holds.popleft() if holds else None
            if release is not None:
                self.held.append(method)
                self._changed.notify_all()
        if release is not None:
            release.wait(timeout=60)
        with self._changed:
            answer = self._answer_api(*args, **kwargs)
            self._changed.notify_all()
            return answer

    def handle_response_url(self, key: str, body: bytes) -> tuple[int, str]:
        """A POST to a ``response_url`` (Slack answers "ok"; the message is kept for `responses`)."""
        try:
            message = json.loads(body or b"{}")
        except ValueError:
            return 400, "invalid_payload"
        with self._changed:
            self._responses.append({"key": key, **message})
            self._changed.notify_all()
        return 200, "ok"

    def response_url(self, key: str) -> str:
        """A ``response_url`` for an interaction payload; what the app posts there shows in `responses`."""
        return f"{self.root_url}/response/{key}"

    def responses(self, key: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(r) for r in self._responses if key in (None, r["key"])]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 15.0, what: str = "a condition") -> Any:
        """Block until ``predicate()`` is truthy (re-checked after every API call) and return its value.

        Listeners finish after the HTTP ack, so tests wait for the calls they expect instead of
        sleeping; the timeout only turns a hang into a failure that says what never happened.
        """
        import time

        deadline = time.monotonic() + timeout
        with self._changed:
            while not (result := predicate()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"timed out waiting for {what}; calls so far: {[c.method for c in self.calls][-20:]}"
                    )
                self._changed.wait(remaining)
            return result

    def _answer_api(
        self,
        method: str,
        args: dict[str, Any],
        token: str | None,
        http_method: str,
        headers: dict[str, str],
        *,
        recorded_args: dict[str, Any] | None = None,
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Answer one API call: (HTTP status, JSON body, extra headers). ``args`` are the arguments Slack
        would read; ``recorded_args`` (default ``args``) what the client sent, kept in ``calls``."""
        sent = args if recorded_args is None else recorded_args
        with self._lock:
            self.calls.append(Call(method, copy.deepcopy(sent), http_method, dict(headers)))
            spec = self.specs.get(method)
            if spec is None:
                return 404, {"ok": False, "error": "unknown_method", "req_method": method}, {}
            if self._rate_limit_all is not None:
                retry = {"Retry-After": str(self._rate_limit_all)}
                return 429, {"ok": False, "error": "ratelimited"}, retry
            faults = self._faults.get(method)
            if faults:
                fault = faults.popleft()
                extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                return fault.status, {"ok": False, "error": fault.error}, extra
            try:
                if token is None:
                    raise SlackError("not_authed")
                if token not in self._tokens and token not in self._app_tokens:
                    raise SlackError("invalid_auth")
                # Token types: an app-level token opens Socket Mode connections and calls nothing else.
                if (method in APP_TOKEN_METHODS) != (token in self._app_tokens):
                    raise SlackError("not_allowed_token_type")
                self._check_scopes(spec, token, args)
                user_id, bot_id = self._tokens.get(token, ("", None))  # an app-level token acts as no user
                ctx = _Ctx(method, {k: v for k, v in args.items() if k != "token"}, user_id, bot_id)
                for arg in spec.required:
                    if ctx.get(arg) is None:
                        raise spec.missing_arg_error(arg)
                handler = self._handlers.get(method)
                if handler is None:
                    raise SlackError("not_implemented", f"the emulator has no handler for {method}")
                return 200, {"ok": True, **handler(ctx)}, {}
            except SlackError as err:
                return err.status, err.body(), {}

    def handle_upload(self, file_id: str, data: bytes) -> tuple[int, str]:
        with self._lock:
            upload = self._files.get(file_id)
            if upload is None or upload.completed:
                return 404, "Not Found"
            upload.content = data
            return 200, f"OK - {len(data)}"

    # ------------------------------------------------------------------ internals: scopes

    def _conversation_kind(self, args: dict[str, Any]) -> str | None:
        value = args.get("channel") or args.get("channel_id")
        channel = self._channels.get(str(value)) if value else None
        if channel is None:
            return "im" if value and str(value) in self._users else None  # a user id: the app's DM
        if channel.is_im:
            return "im"
        return "groups" if channel.is_private else "channels"

    def _check_scopes(self, spec: MethodSpec, token: str, args: dict[str, Any]) -> None:
        granted = self._scopes.get(token)
        if granted is None:
            return
        needed = spec.scopes_needed(self._conversation_kind(args))
        if needed and not granted & set(needed):
            error = SlackError("missing_scope")
            error.extra = {"needed": ",".join(needed), "provided": ",".join(sorted(granted))}
            raise error

    # ------------------------------------------------------------------ internals: ids and lookups

    def _next_counter(self) -> int:
        self._counter += 1
        return self._counter

    def _next_ts(self) -> str:
        self._ts_micros += 100
        return f"{1_700_000_000 + self._ts_micros // 1_000_000}.{self._ts_micros % 1_000_000:06d}"

    def _channel(self, value: Any, *, by_name: bool = False) -> Channel:
        """Resolve a channel argument; ``by_name`` also accepts ``#name`` and a user id (opens an IM)."""
        value = str(value)
        channel = self._channels.get(value)
        if channel is None and by_name:
            name = value.removeprefix("#")
            channel = next((c for c in self._channels.values() if c.name == name and not c.is_im), None)
            if channel is None and value in self._users:
                channel = self._open_im(value)
        if channel is None:
            raise SlackError("channel_not_found")
        if channel.is_private and not self._is_member(channel, self.bot_user_id):
            raise SlackError("channel_not_found")
        return channel

    def _open_im(self, user_id: str) -> Channel:
        channel_id = "D" + user_id[1:]
        if channel_id not in self._channels:
            self._channels[channel_id] = Channel(
                id=channel_id, name=channel_id, members={user_id, self.bot_user_id}, is_im=True, user=user_id
            )
            self._messages[channel_id] = []
        return self._channels[channel_id]

    @staticmethod
    def _is_member(channel: Channel, user_id: str) -> bool:
        return channel.members is None or user_id in channel.members

    def _message(self, channel: Channel, ts: Any, error: str = "message_not_found") -> dict[str, Any]:
        for msg in self._messages[channel.id]:
            if msg["ts"] == ts:
                return msg
        raise SlackError(error)

    def _permalink(self, channel: Channel, msg: dict[str, Any]) -> str:
        link = f"https://{self.team_domain}.slack.com/archives/{channel.id}/p{msg['ts'].replace('.', '')}"
        if msg.get("thread_ts") and msg["thread_ts"] != msg["ts"]:
            link += f"?thread_ts={msg['thread_ts']}&cid={channel.id}"
        return link

    # ------------------------------------------------------------------ internals: validation

    def _check_blocks(self, blocks: Any, limit: int, pointer: str) -> list[dict[str, Any]]:
        """Validate a ``blocks`` argument; raise SlackError('invalid_blocks_format'|'invalid_blocks')."""
        if not isinstance(blocks, list):
            raise SlackError("invalid_blocks_format", f"[ERROR] must be an array [json-pointer:{pointer}]")
        problems: list[str] = []
        if len(blocks) > limit:
            problems.append(f"[ERROR] no more than {limit} items allowed [json-pointer:{pointer}]")
        seen: set[str] = set()
        for i, block in enumerate(blocks):
            where = f"{pointer}/{i}"
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                problems.append(f"[ERROR] missing required field: type [json-pointer:{where}]")
                continue
            block_id = block.get("block_id")
            if block_id is not None:
                if not isinstance(block_id, str) or len(block_id) > MAX_BLOCK_ID:
                    problems.append(
                        f"[ERROR] must be less than 256 characters [json-pointer:{where}/block_id]"
                    )
                elif block_id in seen:
                    problems.append(f"[ERROR] duplicate block_id [json-pointer:{where}/block_id]")
                seen.add(str(block_id))
            if block["type"] == "section":
                if len(_text_of(block.get("text"))) > MAX_SECTION_TEXT:
                    problems.append(f"[ERROR] must be less than 3001 characters [json-pointer:{where}/text]")
                if "text" not in block and not block.get("fields"):
                    problems.append(f"[ERROR] missing required field: text [json-pointer:{where}]")
            elif block["type"] == "header" and len(_text_of(block.get("text"))) > MAX_HEADER_TEXT:
                problems.append(f"[ERROR] must be less than 151 characters [json-pointer:{where}/text]")
        if problems:
            raise SlackError("invalid_blocks", *problems)
        return blocks

    def _message_content(self, ctx: _Ctx, *, update: bool = False) -> dict[str, Any]:
        """text / blocks / attachments of a chat.* call, checked as Slack checks them."""
        content: dict[str, Any] = {}
        text = ctx.args.get("text")
        if text is not None:
            content["text"] = str(text)
        blocks = ctx.args.get("blocks")
        if blocks is not None:
            content["blocks"] = self._check_blocks(blocks, MAX_MESSAGE_BLOCKS, "/blocks")
        attachments = ctx.args.get("attachments")
        if attachments is not None:
            if not isinstance(attachments, list) or not all(isinstance(a, dict) for a in attachments):
                errors = self.specs[ctx.method].errors
                raise SlackError(
                    "invalid_attachments" if "invalid_attachments" in errors else "invalid_arguments"
                )
            if len(attachments) > 100:
                raise SlackError("too_many_attachments")
            content["attachments"] = attachments
        if ctx.get("markdown_text") is not None:
            if ctx.get("text") is not None or ctx.args.get("blocks"):
                raise SlackError("markdown_text_conflict")
            content["text"] = str(ctx.args["markdown_text"])
        has_content = bool(content.get("text") or content.get("blocks") or content.get("attachments"))
        if not has_content and not (update and ctx.get("file_ids")):
            raise SlackError("no_text")
        if len(content.get("text", "")) > self.max_text_length:
            raise SlackError("msg_too_long")
        if "blocks" in content:
            content["blocks"] = [
                {**b, "block_id": b.get("block_id") or _random_id()} for b in content["blocks"]
            ]
        if "attachments" in content:
            content["attachments"] = [{"id": i + 1, **a} for i, a in enumerate(content["attachments"])]
        return content

    def _check_view(self, view: Any, allowed_types: tuple[str, ...]) -> dict[str, Any]:
        if isinstance(view, str):
            try:
                view = json.loads(view)
            except ValueError as exc:
                raise SlackError(
                    "invalid_arguments", "[ERROR] must be a valid JSON object [json-pointer:/view]"
                ) from exc
        if not isinstance(view, dict):
            raise SlackError("invalid_arguments", "[ERROR] must be an object [json-pointer:/view]")
        if len(json.dumps(view)) > MAX_VIEW_BYTES:
            raise SlackError("view_too_large")
        problems: list[str] = []
        view_type = view.get("type")
        if view_type not in allowed_types:
            problems.append(f"[ERROR] must be one of {list(allowed_types)} [json-pointer:/view/type]")
        if view_type == "modal":
            if not isinstance(view.get("title"), dict):
                problems.append("[ERROR] missing required field: title [json-pointer:/view]")
            for key in ("title", "submit", "close"):
                if len(_text_of(view.get(key))) > MAX_VIEW_TITLE:
                    problems.append(
                        f"[ERROR] must be less than 25 characters [json-pointer:/view/{key}/text]"
                    )
        if len(str(view.get("private_metadata", ""))) > MAX_PRIVATE_METADATA:
            problems.append("[ERROR] must be less than 3001 characters [json-pointer:/view/private_metadata]")
        if len(str(view.get("callback_id", ""))) > MAX_CALLBACK_ID:
            problems.append("[ERROR] must be less than 256 characters [json-pointer:/view/callback_id]")
        if "blocks" not in view:
            problems.append("[ERROR] missing required field: blocks [json-pointer:/view]")
        else:
            try:
                self._check_blocks(view["blocks"], MAX_VIEW_BLOCKS, "/view/blocks")
            except SlackError as err:
                problems.extend(err.messages)
        if problems:
            raise SlackError("invalid_arguments", *problems)
        return view

    # ------------------------------------------------------------------ internals: state changes

    def _store_message(
        self,
        channel: Channel,
        *,
        user: str,
        bot_id: str | None,
        text: str = "",
        thread_ts: Any = None,
        reply_broadcast: bool = False,
        **fields: Any,
    ) -> dict[str, Any]:
        msg: dict[str, Any] = {"type": "message", "text": text, "user": user}
        if bot_id:
            msg.update(bot_id=bot_id, app_id=self.app_id)
        msg.update(fields)
        msg["ts"] = self._next_ts()
        msg["team"] = self.team_id
        parent = None
        if thread_ts:
            parent = next((m for m in self._messages[channel.id] if m["ts"] == thread_ts), None)
            if parent is not None and parent.get("thread_ts") not in (None, parent["ts"]):
                # A reply's ts given as thread_ts: Slack threads onto that reply's parent.
                parent = self._message(channel, parent["thread_ts"])
        if parent is not None:
            msg["thread_ts"] = parent["ts"]
            msg["parent_user_id"] = parent["user"]
            if reply_broadcast:
                msg["subtype"] = "thread_broadcast"
            parent["thread_ts"] = parent["ts"]
            parent["reply_count"] = parent.get("reply_count", 0) + 1
            reply_users = parent.setdefault("reply_users", [])
            if user not in reply_users:
                reply_users.append(user)
            parent["reply_users_count"] = len(reply_users)
            parent["latest_reply"] = msg["ts"]
        self._messages[channel.id].append(msg)
        return msg

    def _render_view(
        self, view: dict[str, Any], *, view_id: str, root_view_id: str | None = None
    ) -> dict[str, Any]:
        blocks = [{**b, "block_id": b.get("block_id") or _random_id()} for b in view.get("blocks", [])]
        rendered: dict[str, Any] = {
            "id": view_id,
            "team_id": self.team_id,
            "type": view["type"],
            "close": None,
            "submit": None,
            "private_metadata": "",
            "callback_id": "",
            "external_id": "",
            "state": {"values": {}},
            "clear_on_close": False,
            "notify_on_close": False,
            "previous_view_id": None,
            "app_id": self.app_id,
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }
        rendered.update({k: v for k, v in view.items() if k != "blocks"})
        rendered["blocks"] = blocks
        rendered["id"] = view_id
        rendered["root_view_id"] = root_view_id or view_id
        rendered["hash"] = f"{self._next_ts()}.{secrets.token_hex(4)}"
        return rendered

    def _new_view(self, view: dict[str, Any]) -> dict[str, Any]:
        external_id = view.get("external_id")
        if external_id and any(v.get("external_id") == external_id for v in self._views.values()):
            raise SlackError("duplicate_external_id")
        view_id = f"V{self._next_counter():08d}"
        self._views[view_id] = self._render_view(view, view_id=view_id)
        return self._views[view_id]

    def _use_trigger(self, ctx: _Ctx) -> None:
        trigger = ctx.get("trigger_id") or ctx.get("interactivity_pointer")
        if trigger is None:
            raise SlackError("invalid_arguments", "[ERROR] missing required field: trigger_id")
        state = self._triggers.get(str(trigger))
        if state is None:
            raise SlackError("invalid_trigger_id")
        if state == "used":
            raise SlackError("exchanged_trigger_id")
        if state == "expired":
            raise SlackError("expired_trigger_id")
        self._triggers[str(trigger)] = "used"

    # ------------------------------------------------------------------ handlers: identity

    def _auth_test(self, ctx: _Ctx) -> dict[str, Any]:
        user = self._users.get(ctx.user_id, {})
        out: dict[str, Any] = {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_name,
            "user": user.get("name", ctx.user_id),
            "team_id": self.team_id,
            "user_id": ctx.user_id,
        }
        if ctx.bot_id:
            out["bot_id"] = ctx.bot_id
        out["is_enterprise_install"] = False
        return out

    def _team_info(self, ctx: _Ctx) -> dict[str, Any]:
        if ctx.get("team") not in (None, self.team_id):
            raise SlackError("team_not_found")
        team = {
            "id": self.team_id,
            "name": self.team_name,
            "domain": self.team_domain,
            "email_domain": "",
            "icon": {"image_default": True},
        }
        return {"team": team}

    def _bots_info(self, ctx: _Ctx) -> dict[str, Any]:
        bot = self._bots.get(str(ctx.get("bot") or self.bot_id))
        if bot is None:
            raise SlackError("bot_not_found")
        return {"bot": copy.deepcopy(bot)}

    def _users_info(self, ctx: _Ctx) -> dict[str, Any]:
        user = self._users.get(str(ctx.get("user")))
        if user is None:
            raise SlackError("user_not_found")
        return {"user": copy.deepcopy(user)}

    def _usergroups_users_list(self, ctx: _Ctx) -> dict[str, Any]:
        group = self._usergroups.get(str(ctx.get("usergroup")))
        if group is None:
            raise SlackError("no_such_subteam")
        return {"users": list(group["users"])}

    # ------------------------------------------------------------------ handlers: conversations

    def _conversations_info(self, ctx: _Ctx) -> dict[str, Any]:
        ch = self._channel(ctx.get("channel"))
        info: dict[str, Any] = {"id": ch.id, "created": ch.created, "is_im": ch.is_im}
        if ch.is_im:
            info.update(user=ch.user, is_user_deleted=False, is_open=True)
        else:
            info.update(
                name=ch.name,
                name_normalized=ch.name,
                is_channel=not ch.is_private,
                is_group=ch.is_private,
                is_mpim=False,
                is_private=ch.is_private,
                is_archived=False,
                is_general=ch.name == "general",
                is_shared=False,
                is_ext_shared=False,
                is_org_shared=False,
                is_member=self._is_member(ch, ctx.user_id),
                creator="",
                topic={"value": ch.topic, "creator": "", "last_set": 0},
                purpose={"value": ch.purpose, "creator": "", "last_set": 0},
            )
            if ctx.flag("include_num_members"):
                info["num_members"] = len(ch.members) if ch.members is not None else len(self._users)
        return {"channel": info}

    def _page(self, ctx: _Ctx, messages: list[dict[str, Any]], key: str = "messages") -> dict[str, Any]:
        inclusive = ctx.flag("inclusive")
        for arg, keep in (("oldest", lambda ts, bound: ts > bound), ("latest", lambda ts, bound: ts < bound)):
            if ctx.get(arg) is None:
                continue
            try:
                bound = float(ctx.get(arg))
            except ValueError as exc:
                raise SlackError(f"invalid_ts_{arg}") from exc
            messages = [
                m for m in messages if keep(float(m["ts"]), bound) or (inclusive and float(m["ts"]) == bound)
            ]
        try:
            limit = max(1, min(int(ctx.get("limit") or 100), 1000))
        except ValueError as exc:
            raise SlackError("invalid_arguments", "[ERROR] limit must be an integer") from exc
        start = _offset(ctx.get("cursor"))
        page = messages[start : start + limit]
        has_more = start + limit < len(messages)
        out: dict[str, Any] = {key: copy.deepcopy(page), "has_more": has_more}
        if has_more:
            out["response_metadata"] = {"next_cursor": _cursor(start + limit)}
        return out

    def _conversations_history(self, ctx: _Ctx) -> dict[str, Any]:
        ch = self._channel(ctx.get("channel"))
        if not self._is_member(ch, ctx.user_id):
            raise SlackError("not_in_channel")
        top_level = [
            m
            for m in self._messages[ch.id]
            if m.get("thread_ts") in (None, m["ts"]) or m.get("subtype") == "thread_broadcast"
        ]
        return {**self._page(ctx, list(reversed(top_level))), "pin_count": 0}

    def _conversations_replies(self, ctx: _Ctx) -> dict[str, Any]:
        ch = self._channel(ctx.get("channel"))
        msg = self._message(ch, ctx.get("ts"), error="thread_not_found")
        thread_ts = msg.get("thread_ts") or msg["ts"]
        thread = [m for m in self._messages[ch.id] if m["ts"] == thread_ts or m.get("thread_ts") == thread_ts]
        return self._page(ctx, thread)

    # ------------------------------------------------------------------ handlers: chat

    def _must_be_member(self, ch: Channel) -> None:
        """Posting needs membership (ftbot has no chat:write.public): ``not_in_channel``."""
        if not ch.is_im and not self._is_member(ch, self.bot_user_id):
            raise SlackError("not_in_channel")

    def _chat_post_message(self, ctx: _Ctx) -> dict[str, Any]:
        ch = self._channel(ctx.get("channel"), by_name=True)
        self._must_be_member(ch)
        content = self._message_content(ctx)
        fields = {k: ctx.args[k] for k in ("username", "icon_emoji", "icon_url", "metadata") if ctx.get(k)}
        msg = self._store_message(
            ch,
            user=ctx.user_id,
            bot_id=ctx.bot_id,
            thread_ts=ctx.get("thread_ts"),
            reply_broadcast=ctx.flag("reply_broadcast"),
            **content,
            **fields,
        )
        return {"channel": ch.id, "ts": msg["ts"], "message": copy.deepcopy(msg)}

    def _chat_post_ephemeral(self, ctx: _Ctx) -> dict[str, Any]:
        ch = self._channel(ctx.get("channel"), by_name=True)
        self._must_be_member(ch)
        user = str(ctx.get("user"))
        if not self._is_member(ch, user) or (ch.members is None and user not in self._users):
            raise SlackError("user_not_in_channel")
        content = self._message_content(ctx)
        ts = self._next_ts()
        self._ephemerals.append(
            {"channel": ch.id, "user": user, "ts": ts, "thread_ts": ctx.get("thread_ts"), **content}
        )
        return {"message_ts": ts}

    def _chat_update(self, ctx: _Ctx) -> dict[str, Any]:
        ch = self._channel(ctx.get("channel"))
        msg = self._message(ch, ctx.get("ts"))
        if msg.get("user") != ctx.user_id:
            raise SlackError("cant_update_message")
        content = self._message_content(ctx, update=True)
        msg.update(content)
        if msg.get("blocks") == []:
            del msg["blocks"]
        if msg.get("attachments") == []:
            del msg["attachments"]
        msg["edited"] = {"user": ctx.user_id, "ts": self._next_ts()}
        return {"channel": ch.id, "ts": msg["ts"], "text": msg.get("text", ""), "message": copy.deepcopy(msg)}

    def _chat_delete(self, ctx: _Ctx) -> dict[str, Any]:
        ch = self._channel(ctx.get("channel"))
        msg = self._message(ch, ctx.get("ts"))
        if msg.get("user") != ctx.user_id:
            raise SlackError("cant_delete_message")
        messages = self._messages[ch.id]
        if msg.get("reply_count"):
            # A parent with replies stays as a tombstone, as in Slack.
            tombstone = {k: msg[k] for k in ("ts", "thread_ts", "reply_count", "reply_users", "latest_reply")}
            msg.clear()
            msg.update(
                type="message", subtype="tombstone", text="This message was deleted.", user="USLACKBOT"
            )
            msg.update(hidden=True, **tombstone)
        else:
            messages.remove(msg)
            if msg.get("thread_ts") not in (None, msg["ts"]):
                parent = next((m for m in messages if m["ts"] == msg["thread_ts"]), None)
                if parent is not None:
                    parent["reply_count"] = max(0, parent.get("reply_count", 1) - 1)
        return {"channel": ch.id, "ts": ctx.get("ts")}

    def _chat_get_permalink(self, ctx: _Ctx) -> dict[str, Any]:
        ch = self._channel(ctx.get("channel"))
        msg = self._message(ch, ctx.get("message_ts"))
        return {"channel": ch.id, "permalink": self._permalink(ch, msg)}

    # ------------------------------------------------------------------ handlers: reactions

    def _reacted_message(self, ctx: _Ctx) -> tuple[Channel, dict[str, Any]]:
        if ctx.get("channel") is None or ctx.get("timestamp") is None:
            if ctx.get("file") is not None:
                raise SlackError("file_not_found")
            if ctx.get("file_comment") is not None:
                raise SlackError("file_comment_not_found")
            raise SlackError("no_item_specified")
        if not TS.match(str(ctx.get("timestamp"))):
            raise SlackError("bad_timestamp")
        ch = self._channel(ctx.get("channel"))
        return ch, self._message(ch, ctx.get("timestamp"))

    def _reaction_name(self, ctx: _Ctx) -> str:
        name = str(ctx.get("name"))
        if not EMOJI_NAME.match(name):
            raise SlackError("invalid_name")
        return name

    def _reactions_add(self, ctx: _Ctx) -> dict[str, Any]:
        name = self._reaction_name(ctx)
        _, msg = self._reacted_message(ctx)
        reactions = msg.setdefault("reactions", [])
        reaction = next((r for r in reactions if r["name"] == name), None)
        if reaction is None:
            reaction = {"name": name, "users": [], "count": 0}
            reactions.append(reaction)
        if ctx.user_id in reaction["users"]:
            raise SlackError("already_reacted")
        reaction["users"].append(ctx.user_id)
        reaction["count"] += 1
        return {}

    def _reactions_remove(self, ctx: _Ctx) -> dict[str, Any]:
        name = self._reaction_name(ctx)
        _, msg = self._reacted_message(ctx)
        reactions = msg.get("reactions", [])
        reaction = next((r for r in reactions if r["name"] == name), None)
        if reaction is None or ctx.user_id not in reaction["users"]:
            raise SlackError("no_reaction")
        reaction["users"].remove(ctx.user_id)
        reaction["count"] -= 1
        if reaction["count"] == 0:
            reactions.remove(reaction)
        if not reactions:
            msg.pop("reactions", None)
        return {}

    def _reactions_get(self, ctx: _Ctx) -> dict[str, Any]:
        ch, msg = self._reacted_message(ctx)
        return {
            "type": "message",
            "message": {**copy.deepcopy(msg), "permalink": self._permalink(ch, msg)},
            "channel": ch.id,
        }

    # ------------------------------------------------------------------ handlers: views

    def _views_open(self, ctx: _Ctx) -> dict[str, Any]:
        view = self._check_view(ctx.args.get("view"), ("modal",))
        self._use_trigger(ctx)
        return {"view": copy.deepcopy(self._new_view(view))}

    def _views_push(self, ctx: _Ctx) -> dict[str, Any]:
        return self._views_open(ctx)

    def _views_update(self, ctx: _Ctx) -> dict[str, Any]:
        view = self._check_view(ctx.args.get("view"), ("modal", "home"))
        view_id, external_id = ctx.get("view_id"), ctx.get("external_id")
        if view_id is None and external_id is None:
            raise SlackError("invalid_arguments", "[ERROR] either view_id or external_id is required")
        if view_id is not None:
            current = self._views.get(str(view_id))
        else:
            current = next((v for v in self._views.values() if v.get("external_id") == external_id), None)
        if current is None:
            raise SlackError("not_found")
        if ctx.get("hash") is not None and ctx.get("hash") != current["hash"]:
            raise SlackError("hash_conflict")
        updated = self._render_view(view, view_id=current["id"], root_view_id=current["root_view_id"])
        if external_id is not None and "external_id" not in view:
            updated["external_id"] = external_id
        self._views[current["id"]] = updated
        return {"view": copy.deepcopy(updated)}

    def _views_publish(self, ctx: _Ctx) -> dict[str, Any]:
        view = self._check_view(ctx.args.get("view"), ("home",))
        user_id = str(ctx.get("user_id"))
        current_id = self._home_views.get(user_id)
        if current_id is None:
            rendered = self._new_view(view)
        else:
            current = self._views[current_id]
            if ctx.get("hash") is not None and ctx.get("hash") != current["hash"]:
                raise SlackError("hash_conflict")
            rendered = self._render_view(view, view_id=current_id)
            self._views[current_id] = rendered
        self._home_views[user_id] = rendered["id"]
        return {"view": copy.deepcopy(rendered)}

    # ------------------------------------------------------------------ handlers: Socket Mode

    def _apps_connections_open(self, ctx: _Ctx) -> dict[str, Any]:
        url = self.socket_mode_url() if callable(self.socket_mode_url) else self.socket_mode_url
        if not url:
            raise SlackError(
                "internal_error", "the emulator has no Socket Mode server: set socket_mode_url to its URL"
            )
        return {"url": url}

    # ------------------------------------------------------------------ handlers: files

    def _files_get_upload_url_external(self, ctx: _Ctx) -> dict[str, Any]:
        try:
            length = int(ctx.args["length"])
        except (TypeError, ValueError) as exc:
            raise SlackError("invalid_arguments", "[ERROR] length must be an integer") from exc
        if length < 0:
            raise SlackError("invalid_arguments", "[ERROR] length must be non-negative")
        file_id = f"F{self._next_counter():09d}"
        self._files[file_id] = UploadedFile(
            id=file_id,
            filename=str(ctx.args["filename"]),
            length=length,
            alt_txt=ctx.get("alt_txt"),
            snippet_type=ctx.get("snippet_type"),
        )
        return {"upload_url": f"{self.root_url}/upload/{file_id}", "file_id": file_id}

    def _file_object(self, upload: UploadedFile) -> dict[str, Any]:
        return {
            "id": upload.id,
            "created": 1_700_000_000,
            "timestamp": 1_700_000_000,
            "name": upload.filename,
            "title": upload.title,
            "mimetype": "application/octet-stream",
            "filetype": upload.snippet_type or "binary",
            "user": self.bot_user_id,
            "size": len(upload.content or b""),
            "is_external": False,
            "is_public": upload.completed and bool(upload.channel_id or upload.channels),
            "url_private": f"{self.root_url}/files/{upload.id}/{upload.filename}",
            "permalink": f"https://{self.team_domain}.slack.com/files/{self.bot_user_id}/{upload.id}",
        }

    def _files_complete_upload_external(self, ctx: _Ctx) -> dict[str, Any]:
        items = ctx.args["files"]
        if (
            not isinstance(items, list)
            or not items
            or not all(isinstance(i, dict) and "id" in i for i in items)
        ):
            raise SlackError("invalid_arguments", "[ERROR] files must be a JSON array of {id, title}")
        uploads = []
        for item in items:
            upload = self._files.get(str(item["id"]))
            if upload is None or upload.content is None or upload.completed:
                raise SlackError("file_not_found")
            uploads.append((upload, item))
        targets: list[Channel] = []
        if ctx.get("channel_id") is not None:
            targets.append(self._channel(ctx.get("channel_id")))
        if ctx.get("channels") is not None:
            for channel_id in str(ctx.get("channels")).split(","):
                try:
                    targets.append(self._channel(channel_id.strip()))
                except SlackError as exc:
                    raise SlackError("invalid_channel") from exc
        for upload, item in uploads:
            upload.title = item.get("title") or upload.filename
            upload.channel_id = ctx.get("channel_id")
            upload.channels = [c.id for c in targets]
            upload.initial_comment = ctx.get("initial_comment")
            upload.thread_ts = ctx.get("thread_ts")
            upload.completed = True
        file_objects = [self._file_object(u) for u, _ in uploads]
        for channel in targets:
            self._store_message(
                channel,
                user=ctx.user_id,
                bot_id=ctx.bot_id,
                text=str(ctx.get("initial_comment") or ""),
                thread_ts=ctx.get("thread_ts"),
                files=copy.deepcopy(file_objects),
                upload=True,
            )
        return {"files": file_objects}


class _RequestHandler(BaseHTTPRequestHandler):
    """HTTP front end: parses the request, hands it to the emulator, writes the answer."""

    emulator: SlackEmulator
    server_version = "SlackEmulator/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        body = (
            self.rfile.read(int(self.headers.get("Content-Length") or 0)) if self.command == "POST" else b""
        )
        if parts.path.startswith("/response/") and self.command == "POST":
            status, text = self.emulator.handle_response_url(parts.path.removeprefix("/response/"), body)
            self._write(status, text.encode(), "text/plain; charset=utf-8", {})
            return
        if parts.path.startswith("/upload/") and self.command == "POST":
            status, text = self.emulator.handle_upload(parts.path.removeprefix("/upload/"), body)
            self._write(status, text.encode(), "text/plain; charset=utf-8", {})
            return
        if not parts.path.startswith("/api/"):
            self._write(404, b"Not Found", "text/plain; charset=utf-8", {})
            return
        method = parts.path.removeprefix("/api/")
        args = _decode_json_args(_single(parse_qs(parts.query, keep_blank_values=True)))
        sent = args  # what the client sent, recorded as the call's args
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        spec = self.emulator.specs.get(method)
        try:
            if body and content_type == "application/json":
                parsed = json.loads(body)
                if not isinstance(parsed, dict):
                    raise ValueError("not an object")
                sent = {**args, **parsed}
                # Slack reads a JSON body only where the method supports it, and never a token in it.
                if spec is None or spec.json_input:
                    args = {**args, **{k: v for k, v in parsed.items() if k != "token"}}
            elif body and content_type == "multipart/form-data":
                args.update(_decode_json_args(_parse_multipart(body, self.headers["Content-Type"])))
            elif body:
                args.update(
                    _decode_json_args(_single(parse_qs(body.decode("utf-8"), keep_blank_values=True)))
                )
        except (ValueError, UnicodeDecodeError):
            error = "invalid_json" if content_type == "application/json" else "invalid_form_data"
            self._write_json(200, {"ok": False, "error": error}, {})
            return
        auth = self.headers.get("Authorization") or ""
        token = auth[7:].strip() if auth.startswith("Bearer ") else None
        token = token or args.get("token") or None
        headers = dict(self.headers.items())
        status, payload, extra = self.emulator.handle_api(
            method, args, token, self.command, headers, recorded_args=sent
        )
        self._write_json(status, payload, extra)

    def _write_json(self, status: int, payload: dict[str, Any], extra: dict[str, str]) -> None:
        self._write(status, json.dumps(payload).encode(), "application/json; charset=utf-8", extra)

    def _write(self, status: int, body: bytes, content_type: str, extra: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


def _single(query: dict[str, list[str]]) -> dict[str, Any]:
    return {k: v[-1] for k, v in query.items()}


def _decode_json_args(args: dict[str, Any]) -> dict[str, Any]:
    out = dict(args)
    for key in JSON_ARGS & out.keys():
        if isinstance(out[key], str) and out[key].strip()[:1] in ("[", "{"):
            # If it does not parse it stays a string, and the handler refuses it with the method's error.
            with contextlib.suppress(ValueError):
                out[key] = json.loads(out[key])
    return out


def _parse_multipart(body: bytes, content_type: str) -> dict[str, Any]:
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    if not message.is_multipart():
        raise ValueError("not multipart")
    out: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        out[str(name)] = payload if part.get_filename() else payload.decode("utf-8")
    return out
