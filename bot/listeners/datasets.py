"""Dataset projects in Slack: the project modal, examples from thread replies and the message
shortcut, votes from reactions, conflicts, the live tally and the App Home tab.

Each handler does its database work in one unit of work and calls Slack only after it committed.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient
from sqlmodel import Session

from bot import inbox
from bot.deps import Deps, deps_of
from bot.directory import DirectoryMiss
from runner.core.db import session_scope
from runner.core.exceptions import DatasetError, FtbotError
from runner.core.models import Project, TaskType
from runner.core.policy import Action, decide, perform
from runner.data import examples, gates, projects, textnorm
from runner.slack import payloads
from runner.slack.client import call

log = logging.getLogger(__name__)

ADJUDICATE_ACTION = re.compile(r"^adjudicate_\d+$")
MENTIONED_USER = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
# reactions.add / reactions.remove are rate-limited per workspace (Slack's tier 3, about 50 a
# minute): a burst of votes flips marks a few at a time, one batch per tally refresh.
MAX_WARNING_FLIPS = 5


def ephemeral(client: WebClient, channel: str, user: str, text: str, **extra: Any) -> None:
    call(client, "chat_postEphemeral", channel=channel, user=user, **extra, **payloads.notice(text))


# --- the live tally ------------------------------------------------------------------------------


def refresh_tally(deps: Deps, client: WebClient, project_id: int) -> None:
    """Bring Slack in line with the database for one project (called through the per-project throttle,
    so refreshes never overlap): the :warning: reactions on conflicts, then the tally message."""
    with session_scope(deps.engine) as session:
        project = session.get(Project, project_id)
        if project is None or project.root_ts is None:
            return
        stats = gates.project_stats(session, project)
        conflicted = {s.example.id for s in stats.conflicts}
        pending = [
            s.example for s in stats.examples if (s.example.id in conflicted) != s.example.warning_marked
        ]
        flips = [
            (e.channel_id, e.message_ts, e.id in conflicted)
            for e in pending[:MAX_WARNING_FLIPS]
            if examples.claim_warning_change(session, e.id or 0, e.id in conflicted)
        ]
        payload = payloads.project_root(stats)
        channel, root_ts = project.channel_id, project.root_ts
    for example_channel, example_ts, marked in flips:
        method = "reactions_add" if marked else "reactions_remove"
        call(client, method, channel=example_channel, timestamp=example_ts, name=projects.WARNING_EMOJI)
    call(client, "chat_update", channel=channel, ts=root_ts, **payload)
    if len(pending) > MAX_WARNING_FLIPS:
        deps.tally.touch(project_id)  # the rest in the next refresh, one interval later


# --- helpers ------------------------------------------------------------------------------------


def _input_value(values: dict[str, Any], block_id: str) -> Any:
    element = values.get(block_id, {}).get("value", {})
    kind = element.get("type")
    if kind == "static_select":
        return (element.get("selected_option") or {}).get("value")
    if kind == "multi_users_select":
        return element.get("selected_users") or []
    return element.get("value")


def spec_from_view(values: dict[str, Any]) -> projects.ProjectSpec:
    def number(block_id: str, default: float) -> float:
        raw = _input_value(values, block_id)
        try:
            return float(raw) if raw not in (None, "") else default
        except ValueError:
            return -1.0

    groups = _input_value(values, "reviewer_groups") or ""
    return projects.ProjectSpec(
        name=(_input_value(values, "name") or "").strip().lower(),
        task_type=_input_value(values, "task_type") or "classification",
        label_lines=_input_value(values, "labels") or "",
        field_names=_input_value(values, "fields") or "",
        reviewers=list(_input_value(values, "reviewers") or []),
        reviewer_groups=[g.strip() for g in re.split(r"[,\s]+", groups) if g.strip()],
        min_per_label=int(number("min_per_label", 10)),
        agreement_threshold=number("agreement_threshold", 0.6),
        instructions=_input_value(values, "instructions") or "",
    )


def plain_text(deps: Deps, client: WebClient, text: str) -> str:
    """Slack markup as plain text, mentioned users by their display names."""
    names = {uid: deps.directory.display_name(client, uid) for uid in set(MENTIONED_USER.findall(text))}
    return textnorm.slack_to_plain(text, users=names)


def root_of_thread(client: WebClient, channel_id: str, thread_ts: str) -> int | None:
    """The project id a thread's root message names in its metadata, if it is a project root."""
    thread = call(
        client, "conversations_replies", channel=channel_id, ts=thread_ts, limit=1, include_all_metadata=True
    )
    messages: list[dict[str, Any]] = thread.get("messages", []) if thread else []
    metadata = (messages[0].get("metadata") or {}) if messages else {}
    if metadata.get("event_type") != payloads.ROOT_METADATA:
        return None
    project_id = (metadata.get("event_payload") or {}).get("project_id")
    return int(project_id) if isinstance(project_id, int) else None


def project_of_thread(deps: Deps, client: WebClient, channel_id: str, thread_ts: str) -> int | None:
    """The project whose thread `thread_ts` is. A reply can arrive before the new project's root ts is
    stored (it is known only once chat.postMessage returns): while a project in this channel has no
    root yet, the thread's root is read from Slack, whose metadata names the project."""
    with session_scope(deps.engine) as session:
        found = projects.project_for_thread(session, channel_id, thread_ts)
        if found is not None:
            return found.id
        waiting = [
            p.id for p in projects.list_projects(session) if p.channel_id == channel_id and not p.root_ts
        ]
    if not waiting:
        return None
    project_id = root_of_thread(client, channel_id, thread_ts)
    if project_id not in waiting:
        return None
    with session_scope(deps.engine) as session:
        project = session.get(Project, project_id)
        if project is not None and not project.root_ts:
            project.root_ts = thread_ts
            session.add(project)
    return project_id


def open_project_modal(client: WebClient, trigger_id: str, channel_id: str, interview_id: int | None) -> None:
    call(client, "views_open", trigger_id=trigger_id, view=payloads.project_modal(channel_id, interview_id))


# --- the project modal ------------------------------------------------------------------------


def on_collect(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
    ack()
    value = json.loads(body["actions"][0].get("value") or "{}")
    open_project_modal(client, body["trigger_id"], body["channel"]["id"], value.get("i"))


def on_project_submitted(
    ack: Ack, body: dict[str, Any], client: WebClient, view: dict[str, Any], context: BoltContext
) -> None:
    deps = deps_of(context)
    spec = spec_from_view(view["state"]["values"])
    problems = spec.problems()
    if not problems:
        with session_scope(deps.engine) as session:
            if any(p.name == spec.name for p in projects.list_projects(session)):
                problems["name"] = f"A project named {spec.name} already exists."
    if problems:
        ack(response_action="errors", errors=problems)
        return
    ack()
    metadata = json.loads(view.get("private_metadata") or "{}")
    user_id = body["user"]["id"]
    try:
        with session_scope(deps.engine) as session:
            project = projects.create_project(
                session,
                spec,
                owner_id=user_id,
                channel_id=metadata["channel"],
                interview_id=metadata.get("interview"),
            )
            root = payloads.project_root(gates.project_stats(session, project))
    except DatasetError as exc:
        ephemeral(client, metadata["channel"], user_id, str(exc))
        return
    assert project.id is not None
    posted = call(
        client,
        "chat_postMessage",
        channel=project.channel_id,
        metadata=payloads.root_metadata(project),
        **root,
    )
    if posted is None:
        ephemeral(
            client,
            project.channel_id,
            user_id,
            "I created the project but cannot post in this channel: invite me with `/invite @ftbot`.",
        )
        return
    with session_scope(deps.engine) as session:
        stored = session.get(Project, project.id)
        if stored is not None and not stored.root_ts:
            stored.root_ts = posted["ts"]
            session.add(stored)
    deps.tally.touch(project.id)  # count replies that raced the root's ts


# --- examples: thread replies, edits, deletions ------------------------------------------------


def on_message(event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    deps = deps_of(context)
    subtype = event.get("subtype")
    if subtype == "message_changed":
        on_edit(deps, event, client)
    elif subtype == "message_deleted":
        on_delete(deps, event)
    elif subtype in (None, "thread_broadcast", "file_share") and not event.get("bot_id"):
        on_reply(deps, event, client)


def on_reply(deps: Deps, event: dict[str, Any], client: WebClient) -> None:
    thread_ts = event.get("thread_ts")
    if not thread_ts or thread_ts == event.get("ts") or not event.get("user") or event.get("bot_id"):
        return
    project_id = project_of_thread(deps, client, event["channel"], thread_ts)
    if project_id is None:
        return
    text = plain_text(deps, client, str(event.get("text") or ""))
    try:
        with session_scope(deps.engine) as session:
            project = session.get(Project, project_id)
            assert project is not None
            name = project.name
            _, created = examples.add_example(
                session,
                project,
                channel_id=event["channel"],
                message_ts=event["ts"],
                author_id=event["user"],
                text=text,
            )
    except DatasetError as exc:
        ephemeral(client, event["channel"], event["user"], f"Not added to {name}: {exc}", thread_ts=thread_ts)
        return
    if created:
        deps.tally.touch(project_id)


def on_edit(deps: Deps, event: dict[str, Any], client: WebClient) -> None:
    message = event.get("message") or {}
    text = plain_text(deps, client, str(message.get("text") or ""))
    try:
        with session_scope(deps.engine) as session:
            found = examples.edit_example(session, event["channel"], message.get("ts", ""), text)
            project_id = found[0].id if found else None
    except DatasetError as exc:
        if message.get("user"):
            ephemeral(
                client, event["channel"], message["user"], f"Your edit was not applied to the dataset: {exc}"
            )
        return
    if project_id is not None:
        deps.tally.touch(project_id)


def on_delete(deps: Deps, event: dict[str, Any]) -> None:
    with session_scope(deps.engine) as session:
        found = examples.delete_example(session, event["channel"], str(event.get("deleted_ts", "")))
        project_id = found[0].id if found else None
    if project_id is not None:
        deps.tally.touch(project_id)


# --- votes from reactions -----------------------------------------------------------------------


def adopt(deps: Deps, client: WebClient, channel: str, ts: str) -> bool:
    """Events are not ordered: a reaction can arrive before the message event of the reply it is on.
    An unknown message in a project channel is read from Slack and, if it is a reply in a project
    thread, added first. True when it was added."""
    thread = call(client, "conversations_replies", channel=channel, ts=ts, limit=200)
    replies: list[dict[str, Any]] = thread.get("messages", []) if thread else []
    message = next((m for m in replies if m.get("ts") == ts), None)
    if message is None:
        return False
    on_reply(deps, {**message, "channel": channel}, client)
    return True


@dataclass(frozen=True)
class _Reaction:
    """What one reaction came to (the outcome of `_count`)."""

    project: Project | None = None  # the example's project, when the reaction is on an example
    counted: bool = False  # a vote was added or retracted
    reviewer: bool = True  # False: the person is not a reviewer of the project
    in_project_channel: bool = False  # not on an example, but in a channel holding a project


def _count(deps: Deps, channel: str, ts: str, user: str, emoji: str, added: bool) -> _Reaction:
    """One unit of work: find the example, decide whether the person may vote (user groups from the
    cache: `DirectoryMiss` when one is not cached), record or retract the vote, and settle the event
    in the same transaction.

    Reactions come in bursts of hundreds (a labeling session), so this is the bot's hottest path.
    """
    with session_scope(deps.engine) as session:
        found = examples.vote_target(session, channel, ts)
        if found is None:
            return _Reaction(in_project_channel=channel in projects.project_channels(session))
        project, example_id = found
        value = projects.legend(project).get(emoji)
        if value is None:
            outcome = _Reaction(project)
        elif not decide(deps.settings, project, Action.VOTE, deps.person_cached(user)).allowed:
            outcome = _Reaction(project, reviewer=False)
        else:
            vote = examples.add_vote if added else examples.remove_vote
            outcome = _Reaction(project, counted=vote(session, example_id, user, value))
        inbox.settle_with(session)
        return outcome


def on_reaction(event: dict[str, Any], client: WebClient, context: BoltContext, added: bool) -> None:
    deps = deps_of(context)
    item = event.get("item") or {}
    user = event.get("user", "")
    if item.get("type") != "message" or user == context.get("bot_user_id"):
        return
    emoji = str(event.get("reaction", "")).split("::")[0]
    channel, ts = item.get("channel", ""), item.get("ts", "")
    outcome = _Reaction()
    for _attempt in range(3):  # a group to look up, a message to adopt: each settled outside the unit
        try:
            outcome = _count(deps, channel, ts, user, emoji, added)
        except DirectoryMiss as miss:
            deps.directory.group_members(client, miss.group_id)
            continue
        if outcome.project is None and outcome.in_project_channel and adopt(deps, client, channel, ts):
            continue
        break
    project = outcome.project
    if project is None or project.id is None:
        return
    if outcome.counted:
        deps.tally.touch(project.id)
    elif not outcome.reviewer and added:
        with session_scope(deps.engine) as session:
            first = examples.hint_once(session, project, user)
        if first:
            ephemeral(
                client,
                channel,
                user,
                f"Thanks! Only the reviewers of *{project.name}* label its examples, so your "
                f"reaction is not counted as a vote.",
            )


def on_reaction_added(event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    on_reaction(event, client, context, added=True)


def on_reaction_removed(event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    on_reaction(event, client, context, added=False)


# --- the Add to dataset shortcut -----------------------------------------------------------------


def on_add_shortcut(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    ack()
    deps = deps_of(context)
    message = body.get("message") or {}
    channel_id = (body.get("channel") or {}).get("id", "")
    with session_scope(deps.engine) as session:
        choices = projects.list_projects(session)
    if not choices:
        ephemeral(
            client,
            channel_id,
            body["user"]["id"],
            "There is no dataset project yet: create one with `/finetune new`.",
        )
        return
    in_thread = bool(message.get("thread_ts")) and message.get("thread_ts") != message.get("ts")
    metadata = {
        "channel": channel_id,
        "ts": message.get("ts"),
        "thread_ts": message.get("thread_ts") if in_thread else None,
    }
    view = payloads.add_to_dataset_modal(
        metadata,
        choices,
        in_thread=in_thread,
        preview=textnorm.slack_to_plain(str(message.get("text") or "")),
    )
    call(client, "views_open", trigger_id=body["trigger_id"], view=view)


def on_add_submitted(
    ack: Ack, body: dict[str, Any], client: WebClient, view: dict[str, Any], context: BoltContext
) -> None:
    ack()
    deps = deps_of(context)
    metadata = json.loads(view.get("private_metadata") or "{}")
    user_id = body["user"]["id"]
    name = _input_value(view["state"]["values"], "project") or ""
    channel_id, ts, thread_ts = metadata["channel"], metadata["ts"], metadata.get("thread_ts")
    history = call(client, "conversations_replies", channel=channel_id, ts=thread_ts or ts, limit=200)
    found: list[dict[str, Any]] = history.get("messages", []) if history else []
    messages = {m.get("ts"): m for m in found}
    chosen, root = messages.get(ts), messages.get(thread_ts) if thread_ts else None
    if chosen is None or (thread_ts and root is None):
        ephemeral(client, channel_id, user_id, "I could not read that message; is the bot in the channel?")
        return
    text = plain_text(deps, client, str(chosen.get("text") or ""))
    source = plain_text(deps, client, str(root.get("text") or "")) if root is not None else None
    try:
        with session_scope(deps.engine) as session:
            project = projects.get_project(session, name)
            pair = source is not None and project.task_type != TaskType.CLASSIFICATION
            _, created = examples.add_example(
                session,
                project,
                channel_id=channel_id,
                message_ts=ts,
                author_id=chosen.get("user", ""),
                text=source if pair and source is not None else text,
                target=text if pair else None,
                source="shortcut",
            )
            project_id, project_name = project.id, project.name
    except DatasetError as exc:
        ephemeral(client, channel_id, user_id, f"Not added: {exc}")
        return
    ephemeral(
        client,
        channel_id,
        user_id,
        f"Added to *{project_name}*. Reviewers label it by reacting on the message."
        if created
        else f"That message is already in *{project_name}*.",
    )
    deps.tally.touch(project_id or 0)


# --- conflicts -------------------------------------------------------------------------------------


def on_adjudicate(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    ack()
    deps = deps_of(context)
    value = json.loads(body["actions"][0].get("value") or "{}")
    user_id = body["user"]["id"]
    channel_id = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id", "")

    def settle(session: Session, project: Project) -> gates.ProjectStats:
        examples.adjudicate(session, project, int(value["e"]), str(value["l"]), user_id)
        return gates.project_stats(session, project)

    try:
        stats = perform(
            deps.engine,
            deps.settings,
            Action.SETTLE,
            deps.person(client, user_id),
            load=lambda session: projects.get_project(session, str(value.get("p", ""))),
            work=settle,
            target=f"example {value.get('e')} → {value.get('l')}",
        )
    except FtbotError as exc:
        ephemeral(client, channel_id, user_id, str(exc))
        return
    deps.tally.touch(stats.project.id or 0)
    call(client, "chat_postEphemeral", channel=channel_id, user=user_id, **payloads.conflicts(stats))


# --- App Home --------------------------------------------------------------------------------------


def on_home(event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    if event.get("tab", "home") != "home":
        return
    deps = deps_of(context)
    with session_scope(deps.engine) as session:
        shown = projects.list_projects(session)[: payloads.MAX_HOME_PROJECTS]
        view = payloads.home([gates.project_stats(session, p) for p in shown])
    call(client, "views_publish", user_id=event["user"], view=view)
