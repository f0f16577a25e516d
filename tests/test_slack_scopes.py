"""The app manifest requests every OAuth scope the code needs, and the emulator holds the bot to them.

The Web API methods ftbot calls are read from the code itself (every ``call(client, "method", …)``,
``try_call``, ``must_call`` and ``client.method(…)``), turned into Slack's method names through
slack_sdk's own ``WebClient`` (``files_upload_v2`` is ``files.getUploadURLExternal`` plus
``files.completeUploadExternal``), and their scopes taken from Slack's method descriptions in
``tests/slack_api_ref``. A method added to the code without its scope in the manifest fails here,
and in every test that reaches it: the emulator answers ``missing_scope``, as Slack does.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
from collections.abc import Iterator
from functools import cache

import pytest
import yaml
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from tests.conftest import MANIFEST, ROOT
from tests.slack_emulator import REF_METHODS_DIR, SlackEmulator

CODE = [ROOT / "bot", ROOT / "runner", ROOT / "demo"]
REF_EVENTS_DIR = REF_METHODS_DIR.parent / "events"
CALL_HELPERS = {"call", "try_call", "must_call"}
HELPERS_MODULE = ROOT / "runner" / "slack" / "client.py"  # where they pass the name along
API_CALL = re.compile(r"""self\.api_call\(\s*["']([a-zA-Z.]+)["']""")
OTHER_METHOD = re.compile(r"self\.([a-z]+_[A-Za-z_0-9]+)\(")
# Kinds of conversation, as the scopes name them, and the message events that bring each.
KIND_OF_EVENT = {
    "message.channels": "channels",
    "message.groups": "groups",
    "message.im": "im",
    "message.mpim": "mpim",
}
PER_KIND = re.compile(r"^(channels|groups|im|mpim):")


def manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


def bot_scopes() -> set[str]:
    return set(manifest()["oauth_config"]["scopes"]["bot"])


def sdk_methods_called(unreadable: list[str] | None = None) -> dict[str, list[str]]:
    """slack_sdk method name → where the code calls it (``path:line``). Calls whose method is not
    a literal string are listed in `unreadable`."""
    found: dict[str, list[str]] = {}
    for folder in CODE:
        for path in sorted(set(folder.rglob("*.py")) - {HELPERS_MODULE}):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                name = None
                func = node.func
                helper = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if helper in CALL_HELPERS and len(node.args) >= 2:
                    method = node.args[1]
                    if isinstance(method, ast.Constant) and isinstance(method.value, str):
                        name = method.value
                    elif unreadable is not None:
                        unreadable.append(f"{path.relative_to(ROOT)}:{node.lineno}")
                elif (
                    isinstance(func, ast.Attribute)
                    and isinstance(func.value, ast.Name)
                    and func.value.id == "client"
                    and hasattr(WebClient, func.attr)
                ):
                    name = func.attr
                if name:
                    found.setdefault(name, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


@cache
def api_methods_of(sdk_method: str) -> frozenset[str]:
    """Slack's method names behind one WebClient method, read from slack_sdk's source."""
    source = inspect.getsource(getattr(WebClient, sdk_method))
    names = set(API_CALL.findall(source))
    for other in set(OTHER_METHOD.findall(source)) - {sdk_method}:
        if hasattr(WebClient, other) and other not in {"api_call"}:
            names |= api_methods_of(other)
    return frozenset(names)


def api_methods_called() -> dict[str, list[str]]:
    """Slack method name → where the code calls it. Bolt itself calls ``auth.test`` (no scope)."""
    methods: dict[str, list[str]] = {"auth.test": ["slack_bolt (authorization)"]}
    for sdk_method, where in sdk_methods_called().items():
        assert hasattr(WebClient, sdk_method), f"{sdk_method} is not a WebClient method ({where})"
        for api_method in api_methods_of(sdk_method):
            methods.setdefault(api_method, []).extend(where)
    return methods


def conversation_kinds() -> set[str]:
    """The kinds of conversation ftbot works in: those whose message events the manifest subscribes to."""
    events = manifest()["settings"]["event_subscriptions"]["bot_events"]
    return {KIND_OF_EVENT[e] for e in events if e in KIND_OF_EVENT}


def scopes_needed(bot: list[str], kinds: set[str]) -> list[set[str]]:
    """What a method's reference scopes (``scope.bot``) ask of a bot token: a list of requirements,
    each met by any one scope of its set. Scopes given one per kind of conversation are needed for
    every kind ftbot works in; otherwise any one listed scope will do."""
    if bot and all(PER_KIND.match(s) for s in bot):
        return [{s} for s in bot if s.split(":")[0] in kinds]
    return [set(bot)] if bot else []


def test_the_code_calls_methods_this_test_can_see():
    """The scan is not empty-handed: it finds the calls the product is known to make, and every
    call names its method literally (a computed name would hide its scope from this test)."""
    unreadable: list[str] = []
    sdk_methods_called(unreadable)
    assert unreadable == [], "call Slack methods by a literal name"
    called = api_methods_called()
    for method in (
        "chat.postMessage",
        "chat.postEphemeral",
        "chat.update",
        "reactions.add",
        "conversations.replies",
        "views.open",
        "files.getUploadURLExternal",
        "files.completeUploadExternal",
    ):
        assert method in called, method


def test_the_manifest_requests_every_scope_the_code_needs():
    granted, kinds = bot_scopes(), conversation_kinds()
    assert kinds == {"channels", "groups"}
    missing = []
    for method, where in sorted(api_methods_called().items()):
        ref = REF_METHODS_DIR / f"{method}.json"
        assert ref.exists(), f"{method} (called at {where[0]}) has no description in {REF_METHODS_DIR}"
        bot = (json.loads(ref.read_text()).get("scope") or {}).get("bot") or []
        for requirement in scopes_needed(bot, kinds):
            if not requirement & granted:
                missing.append(f"{method} needs {' or '.join(sorted(requirement))} (called at {where[0]})")
    assert missing == [], "deploy/slack-manifest.yml lacks:\n" + "\n".join(missing)


def test_the_manifest_requests_the_scopes_of_every_event_it_subscribes_to():
    granted = bot_scopes()
    for event in manifest()["settings"]["event_subscriptions"]["bot_events"]:
        ref = REF_EVENTS_DIR / f"{event}.json"
        if not ref.exists():  # message.groups is described under message: same event, private channels
            assert event in KIND_OF_EVENT, event
            assert f"{KIND_OF_EVENT[event]}:history" in granted, event
            continue
        # The reference spells app_mentions:read with a dot, as Slack's older documentation did.
        needed = {
            s.replace("app_mentions.read", "app_mentions:read") for s in json.loads(ref.read_text())["scopes"]
        }
        assert needed <= granted, f"{event} needs {needed - granted}"
    assert "commands" in granted and manifest()["features"]["slash_commands"]


def test_no_scope_is_requested_that_nothing_needs():
    """Scopes are a promise to the workspace admin: every one is used by a method or an event."""
    kinds = conversation_kinds()
    used = {"commands"}  # the slash command
    for method in api_methods_called():
        bot = (json.loads((REF_METHODS_DIR / f"{method}.json").read_text()).get("scope") or {}).get(
            "bot"
        ) or []
        for requirement in scopes_needed(bot, kinds):
            used |= requirement
    for event in manifest()["settings"]["event_subscriptions"]["bot_events"]:
        ref = REF_EVENTS_DIR / f"{event}.json"
        scopes = (
            json.loads(ref.read_text())["scopes"] if ref.exists() else [f"{KIND_OF_EVENT[event]}:history"]
        )
        used |= {s.replace("app_mentions.read", "app_mentions:read") for s in scopes}
    assert bot_scopes() - used == set()


@pytest.fixture
def scoped() -> Iterator[tuple[SlackEmulator, WebClient]]:
    """An emulator whose bot token holds only chat:write and channels:history."""
    with SlackEmulator(bot_token="xoxb-scoped", scopes=["chat:write", "channels:history"]) as emulator:
        emulator.add_channel("CPUBLIC", "public")
        emulator.add_channel("GPRIVATE", "private", members=["UBOT", "UALICE"], is_private=True)
        emulator.add_user("UALICE", "alice")
        yield emulator, WebClient(token="xoxb-scoped", base_url=emulator.base_url)


@pytest.mark.parametrize(
    ("method", "args", "needed"),
    [
        ("files.getUploadURLExternal", {"filename": "chart.png", "length": 3}, "files:write"),
        ("reactions.add", {"channel": "CPUBLIC", "timestamp": "1.000001", "name": "one"}, "reactions:write"),
        ("conversations.replies", {"channel": "GPRIVATE", "ts": "1.000001"}, "groups:history"),
    ],
)
def test_the_emulator_refuses_a_method_whose_scope_the_token_lacks(scoped, method, args, needed):
    _emulator, client = scoped
    with pytest.raises(SlackApiError) as refused:
        client.api_call(method, params=args)
    assert refused.value.response["error"] == "missing_scope"
    assert refused.value.response["needed"] == needed
    assert set(refused.value.response["provided"].split(",")) == {"chat:write", "channels:history"}


def test_a_scope_for_one_kind_of_conversation_opens_that_kind_only(scoped):
    emulator, client = scoped
    public = emulator.post_user_message("CPUBLIC", "hello", "UALICE")
    private = emulator.post_user_message("GPRIVATE", "hello", "UALICE")
    assert client.conversations_replies(channel="CPUBLIC", ts=public["ts"])["messages"][0]["text"] == "hello"
    with pytest.raises(SlackApiError, match="missing_scope"):
        client.conversations_replies(channel="GPRIVATE", ts=private["ts"])
    assert client.chat_postMessage(channel="GPRIVATE", text="chat:write reaches both")["ok"]
