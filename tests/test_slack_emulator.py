"""Tests of tests/slack_emulator.py, driven through a real slack_sdk.WebClient."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import builtin_handlers
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from tests.slack_emulator import SlackEmulator

TS_FORMAT = re.compile(r"^\d{10}\.\d{6}$")


@pytest.fixture
def emu() -> Iterator[SlackEmulator]:
    with SlackEmulator() as emulator:
        emulator.add_channel("C1", "general")
        emulator.add_user("U1", "alice", real_name="Alice A")
        emulator.add_usergroup("S1", "reviewers", ["U1", "U2"])
        yield emulator


@pytest.fixture
def client(emu: SlackEmulator) -> WebClient:
    # No retry handlers: a connection error must fail the test at once instead of being retried.
    return WebClient(token=emu.bot_token, base_url=emu.base_url, retry_handlers=[])


@pytest.fixture
def retry_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """RateLimitErrorRetryHandler sleeps Retry-After + random() seconds; record instead of sleeping."""
    slept: list[float] = []
    monkeypatch.setattr(builtin_handlers, "time", SimpleNamespace(sleep=slept.append))
    return slept


def error_of(excinfo: pytest.ExceptionInfo[SlackApiError]) -> str:
    return excinfo.value.response["error"]


def blocks(n: int) -> list[dict]:
    return [{"type": "section", "text": {"type": "mrkdwn", "text": f"item {i}"}} for i in range(n)]


def modal(n_blocks: int = 1, title: str = "Fine-tune") -> dict:
    return {"type": "modal", "title": {"type": "plain_text", "text": title}, "blocks": blocks(n_blocks)}


# ---------------------------------------------------------------- messages and threads


def test_post_update_replies_round_trip(emu: SlackEmulator, client: WebClient) -> None:
    parent = client.chat_postMessage(channel="C1", text="training run 7 finished")
    assert parent["ok"] and parent["channel"] == "C1"
    assert TS_FORMAT.match(parent["ts"])
    assert parent["message"]["bot_id"] == "BBOT" and parent["message"]["user"] == "UBOT"

    reply = client.chat_postMessage(channel="C1", text="eval loss 0.41", thread_ts=parent["ts"])
    assert float(reply["ts"]) > float(parent["ts"])
    assert reply["message"]["thread_ts"] == parent["ts"]

    updated = client.chat_update(
        channel="C1", ts=parent["ts"], text="training run 7 finished :white_check_mark:"
    )
    assert updated["ts"] == parent["ts"] and updated["text"].endswith(":white_check_mark:")

    replies = client.conversations_replies(channel="C1", ts=parent["ts"])
    texts = [m["text"] for m in replies["messages"]]
    assert texts == ["training run 7 finished :white_check_mark:", "eval loss 0.41"]
    assert replies["messages"][0]["reply_count"] == 1
    assert replies["messages"][0]["edited"]["user"] == "UBOT"

    # A reply's ts gives the same thread; history shows top-level messages only, newest first.
    assert client.conversations_replies(channel="C1", ts=reply["ts"])["messages"] == replies["messages"]
    later = client.chat_postMessage(channel="#general", text="next run queued")
    history = client.conversations_history(channel="C1")
    assert [m["ts"] for m in history["messages"]] == [later["ts"], parent["ts"]]
    assert [m["text"] for m in emu.messages("C1")][1:] == ["eval loss 0.41", "next run queued"]


def test_update_and_delete_unknown_message(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_update(channel="C1", ts="1700000000.999999", text="x")
    assert error_of(excinfo) == "message_not_found"
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_delete(channel="C1", ts="1700000000.999999")
    assert error_of(excinfo) == "message_not_found"
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(channel="C404", text="x")
    assert error_of(excinfo) == "channel_not_found"


def test_delete_and_user_messages(emu: SlackEmulator, client: WebClient) -> None:
    users_msg = emu.post_user_message("C1", "should we fine-tune?", user="U1")
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_update(channel="C1", ts=users_msg["ts"], text="edited by bot")
    assert error_of(excinfo) == "cant_update_message"
    posted = client.chat_postMessage(channel="C1", text="yes", thread_ts=users_msg["ts"])
    assert client.chat_delete(channel="C1", ts=posted["ts"])["ts"] == posted["ts"]
    assert [m["text"] for m in emu.messages("C1")] == ["should we fine-tune?"]


def test_ephemeral_and_permalink(emu: SlackEmulator, client: WebClient) -> None:
    sent = client.chat_postEphemeral(channel="C1", user="U1", text="only you can see this")
    assert TS_FORMAT.match(sent["message_ts"])
    assert emu.ephemerals("C1")[0]["user"] == "U1"
    assert emu.messages("C1") == []
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postEphemeral(channel="C1", user="U404", text="x")
    assert error_of(excinfo) == "user_not_in_channel"

    msg = client.chat_postMessage(channel="C1", text="hello")
    link = client.chat_getPermalink(channel="C1", message_ts=msg["ts"])["permalink"]
    assert link.endswith("/archives/C1/p" + msg["ts"].replace(".", ""))


# ---------------------------------------------------------------- transport


def test_sdk_read_methods_are_recorded_with_their_http_method(emu: SlackEmulator, client: WebClient) -> None:
    msg = client.chat_postMessage(channel="C1", text="hi")
    client.users_info(user="U1")
    client.reactions_get(channel="C1", timestamp=msg["ts"])
    client.conversations_replies(channel="C1", ts=msg["ts"])
    client.usergroups_users_list(usergroup="S1")
    for method in ("users.info", "reactions.get", "conversations.replies", "usergroups.users.list"):
        call = emu.last(method)
        # slack_sdk's sync WebClient ignores http_verb="GET" and POSTs a form body (base_client.py:
        # "Intentionally ignore the `http_verb` here"); the emulator records what really arrived.
        assert call.http_method == "POST", method
        assert call.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert emu.last("users.info").args == {"user": "U1"}


def test_plain_get_with_query_string(emu: SlackEmulator) -> None:
    request = urllib.request.Request(
        f"{emu.base_url}users.info?user=U1", headers={"Authorization": f"Bearer {emu.bot_token}"}
    )
    with urllib.request.urlopen(request) as response:
        body = json.loads(response.read())
    assert body["ok"] and body["user"]["real_name"] == "Alice A"
    assert emu.last("users.info").http_method == "GET"
    # A token argument in the query string is accepted too.
    with urllib.request.urlopen(f"{emu.base_url}auth.test?token={emu.bot_token}") as response:
        assert json.loads(response.read())["user_id"] == "UBOT"


def test_json_form_and_multipart_posts(emu: SlackEmulator, client: WebClient) -> None:
    two_blocks = blocks(2)
    client.chat_postMessage(channel="C1", text="json", blocks=two_blocks)  # application/json
    assert emu.last("chat.postMessage").headers["Content-Type"].startswith("application/json")
    client.api_call(
        "chat.postMessage", params={"channel": "C1", "text": "form", "blocks": json.dumps(two_blocks)}
    )
    assert emu.last("chat.postMessage").headers["Content-Type"] == "application/x-www-form-urlencoded"
    # slack_sdk sends multipart only when there are files; the file part is just carried along here.
    multipart = {"channel": "C1", "text": "multi", "blocks": json.dumps(two_blocks)}
    client.api_call("chat.postMessage", data=multipart, files={"file": b"unused"})
    assert emu.last("chat.postMessage").headers["Content-Type"].startswith("multipart/form-data")

    stored = emu.messages("C1")
    assert [m["text"] for m in stored] == ["json", "form", "multi"]
    for msg in stored:  # the JSON string inside the form bodies was decoded
        assert [b["text"]["text"] for b in msg["blocks"]] == ["item 0", "item 1"]
        assert all(b["block_id"] for b in msg["blocks"])
    assert isinstance(emu.last("chat.postMessage").args["blocks"], list)


def test_unknown_method(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as excinfo:
        client.api_call("chat.postMessageX", params={"channel": "C1"})
    assert excinfo.value.response.status_code == 404
    assert error_of(excinfo) == "unknown_method"
    assert excinfo.value.response["req_method"] == "chat.postMessageX"


# ---------------------------------------------------------------- auth and arguments


def test_bad_and_missing_token(emu: SlackEmulator) -> None:
    with pytest.raises(SlackApiError) as excinfo:
        WebClient(token="xoxb-wrong", base_url=emu.base_url).auth_test()
    assert error_of(excinfo) == "invalid_auth"
    with pytest.raises(SlackApiError) as excinfo:
        WebClient(base_url=emu.base_url).auth_test()
    assert error_of(excinfo) == "not_authed"


def test_auth_test_identity(client: WebClient) -> None:
    auth = client.auth_test()
    assert (auth["user_id"], auth["bot_id"], auth["team_id"]) == ("UBOT", "BBOT", "T0001")
    assert auth["url"].startswith("https://")


def test_missing_required_arguments(client: WebClient) -> None:
    cases = [
        ("chat.postMessage", {"text": "no channel"}, "channel_not_found"),
        ("chat.postMessage", {"channel": "C1"}, "no_text"),
        ("users.info", {}, "user_not_found"),
        ("usergroups.users.list", {}, "no_such_subteam"),
        ("views.publish", {"view": json.dumps({"type": "home", "blocks": []})}, "invalid_arguments"),
    ]
    for method, args, error in cases:
        with pytest.raises(SlackApiError) as excinfo:
            client.api_call(method, params=args)
        assert error_of(excinfo) == error, method
    with pytest.raises(SlackApiError) as excinfo:
        client.api_call("views.publish", params={"view": json.dumps({"type": "home", "blocks": []})})
    assert excinfo.value.response["response_metadata"]["messages"] == [
        "[ERROR] missing required field: user_id"
    ]


def test_unknown_entities(client: WebClient) -> None:
    for call, error in [
        (lambda: client.users_info(user="U404"), "user_not_found"),
        (lambda: client.usergroups_users_list(usergroup="S404"), "no_such_subteam"),
        (lambda: client.conversations_info(channel="C404"), "channel_not_found"),
        (lambda: client.bots_info(bot="B404"), "bot_not_found"),
    ]:
        with pytest.raises(SlackApiError) as excinfo:
            call()
        assert error_of(excinfo) == error
    assert client.usergroups_users_list(usergroup="S1")["users"] == ["U1", "U2"]
    assert client.conversations_info(channel="C1")["channel"]["name"] == "general"
    assert client.team_info()["team"]["id"] == "T0001"
    assert client.bots_info(bot="BBOT")["bot"]["user_id"] == "UBOT"


# ---------------------------------------------------------------- faults


def test_rate_limit_is_retried(emu: SlackEmulator, retry_sleeps: list[float]) -> None:
    client = WebClient(
        token=emu.bot_token,
        base_url=emu.base_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)],
    )
    emu.rate_limit_next("chat.postMessage", retry_after=0)
    assert client.chat_postMessage(channel="C1", text="after the limit")["ok"]
    assert len(emu.calls_to("chat.postMessage")) == 2
    assert len(retry_sleeps) == 1 and retry_sleeps[0] < 1  # Retry-After: 0, plus random() jitter
    assert [m["text"] for m in emu.messages("C1")] == ["after the limit"]


def test_rate_limit_without_retry(emu: SlackEmulator, client: WebClient) -> None:
    emu.rate_limit_next("users.info", retry_after=7)
    with pytest.raises(SlackApiError) as excinfo:
        client.users_info(user="U1")
    assert excinfo.value.response.status_code == 429
    assert excinfo.value.response.headers["Retry-After"] == "7"
    assert error_of(excinfo) == "ratelimited"
    assert client.users_info(user="U1")["ok"]


def test_fail_next(emu: SlackEmulator, client: WebClient) -> None:
    emu.fail_next("chat.postMessage", "is_archived", times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as excinfo:
            client.chat_postMessage(channel="C1", text="x")
        assert error_of(excinfo) == "is_archived"
    assert client.chat_postMessage(channel="C1", text="x")["ok"]
    emu.clear()
    assert emu.calls == []


# ---------------------------------------------------------------- reactions


def test_reactions(emu: SlackEmulator, client: WebClient) -> None:
    msg = emu.post_user_message("C1", "good answer", user="U1")
    client.reactions_add(channel="C1", timestamp=msg["ts"], name="thumbsup")
    with pytest.raises(SlackApiError) as excinfo:
        client.reactions_add(channel="C1", timestamp=msg["ts"], name="thumbsup")
    assert error_of(excinfo) == "already_reacted"
    got = client.reactions_get(channel="C1", timestamp=msg["ts"])
    assert got["message"]["reactions"] == [{"name": "thumbsup", "users": ["UBOT"], "count": 1}]
    client.reactions_remove(channel="C1", timestamp=msg["ts"], name="thumbsup")
    with pytest.raises(SlackApiError) as excinfo:
        client.reactions_remove(channel="C1", timestamp=msg["ts"], name="thumbsup")
    assert error_of(excinfo) == "no_reaction"
    with pytest.raises(SlackApiError) as excinfo:
        client.reactions_add(channel="C1", timestamp="1600000000.000001", name="eyes")
    assert error_of(excinfo) == "message_not_found"
    with pytest.raises(SlackApiError) as excinfo:
        client.reactions_add(channel="C1", timestamp=msg["ts"], name=":eyes:")
    assert error_of(excinfo) == "invalid_name"


# ---------------------------------------------------------------- views


def test_trigger_id_is_single_use(emu: SlackEmulator, client: WebClient) -> None:
    trigger = emu.new_trigger_id()
    opened = client.views_open(trigger_id=trigger, view=modal())
    assert opened["view"]["id"].startswith("V") and opened["view"]["hash"]
    assert emu.view(opened["view"]["id"])["title"]["text"] == "Fine-tune"
    with pytest.raises(SlackApiError) as excinfo:
        client.views_open(trigger_id=trigger, view=modal())
    assert error_of(excinfo) == "exchanged_trigger_id"  # Slack's error for a trigger already used
    with pytest.raises(SlackApiError) as excinfo:
        client.views_open(trigger_id="1.2.never-issued", view=modal())
    assert error_of(excinfo) == "invalid_trigger_id"
    expired = emu.new_trigger_id()
    emu.expire_trigger_id(expired)
    with pytest.raises(SlackApiError) as excinfo:
        client.views_push(trigger_id=expired, view=modal())
    assert error_of(excinfo) == "expired_trigger_id"


def test_views_update_and_publish(emu: SlackEmulator, client: WebClient) -> None:
    opened = client.views_open(trigger_id=emu.new_trigger_id(), view=modal())["view"]
    updated = client.views_update(view_id=opened["id"], hash=opened["hash"], view=modal(title="Step 2"))
    assert updated["view"]["id"] == opened["id"] and updated["view"]["title"]["text"] == "Step 2"
    with pytest.raises(SlackApiError) as excinfo:
        client.views_update(view_id=opened["id"], hash=opened["hash"], view=modal())
    assert error_of(excinfo) == "hash_conflict"
    with pytest.raises(SlackApiError) as excinfo:
        client.views_update(view_id="VNOPE", view=modal())
    assert error_of(excinfo) == "not_found"

    client.views_publish(user_id="U1", view={"type": "home", "blocks": blocks(3)})
    assert len(emu.home_view("U1")["blocks"]) == 3
    with pytest.raises(SlackApiError) as excinfo:
        client.views_publish(user_id="U1", view=modal())
    assert error_of(excinfo) == "invalid_arguments"


def test_view_limits(emu: SlackEmulator, client: WebClient) -> None:
    client.views_open(trigger_id=emu.new_trigger_id(), view=modal(100))
    for view in (modal(101), modal(title="A title longer than 24 chars")):
        with pytest.raises(SlackApiError) as excinfo:
            client.views_open(trigger_id=emu.new_trigger_id(), view=view)
        assert error_of(excinfo) == "invalid_arguments"
        assert excinfo.value.response["response_metadata"]["messages"]


# ---------------------------------------------------------------- Block Kit limits


def test_more_than_50_blocks_refused(emu: SlackEmulator, client: WebClient) -> None:
    assert client.chat_postMessage(channel="C1", text="fifty", blocks=blocks(50))["ok"]
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(channel="C1", text="fifty-one", blocks=blocks(51))
    assert error_of(excinfo) == "invalid_blocks"
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(channel="C1", text="no type", blocks=[{"text": "x"}])
    assert error_of(excinfo) == "invalid_blocks"
    with pytest.raises(SlackApiError) as excinfo:
        client.api_call("chat.postMessage", params={"channel": "C1", "text": "x", "blocks": "not json"})
    assert error_of(excinfo) == "invalid_blocks_format"
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(channel="C1", text="x" * 40_001)
    assert error_of(excinfo) == "msg_too_long"
    assert [m["text"] for m in emu.messages("C1")] == ["fifty"]


# ---------------------------------------------------------------- files


def test_files_upload_v2_round_trip(emu: SlackEmulator, client: WebClient) -> None:
    parent = client.chat_postMessage(channel="C1", text="dataset ready")
    result = client.files_upload_v2(
        channel="C1",
        content=b"prompt,completion\nhi,hello\n",
        filename="dataset.csv",
        title="Dataset v3",
        initial_comment="here it is",
        thread_ts=parent["ts"],
    )
    assert result["file"]["title"] == "Dataset v3"
    [uploaded] = emu.uploaded_files()
    assert uploaded.id == result["file"]["id"]
    assert uploaded.content == b"prompt,completion\nhi,hello\n"
    assert (uploaded.filename, uploaded.title) == ("dataset.csv", "Dataset v3")
    assert (uploaded.channel_id, uploaded.initial_comment, uploaded.thread_ts) == (
        "C1",
        "here it is",
        parent["ts"],
    )
    shared = emu.thread("C1", parent["ts"])[-1]
    assert shared["text"] == "here it is" and shared["files"][0]["id"] == uploaded.id

    with pytest.raises(SlackApiError) as excinfo:
        client.files_completeUploadExternal(files=[{"id": "F404", "title": "nope"}], channel_id="C1")
    assert error_of(excinfo) == "file_not_found"


def test_bolt_app_can_start_against_the_emulator(emu: SlackEmulator, client: WebClient) -> None:
    from slack_bolt import App

    app = App(client=client, signing_secret="test-secret")
    assert app.client is client
    assert emu.calls_to("auth.test")
