"""Dataset projects in Slack: the project modal, examples from thread replies and the message
shortcut, votes from reactions, conflicts, the live tally and the App Home tab.

Each handler does its database work in one unit of work and calls Slack only after it committed.
Messages that are not contributions never become examples: bot and integration messages, the bot's
own, and messages that mention the bot (``@ftbot help`` in a project thread is a question to it).
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
from bot.listeners import answers
from bot.listeners import compare as compare_listeners
from bot.listeners import pilot as pilot_listeners
from runner.core.db import session_scope
from runner.core.exceptions import DatasetError, FtbotError, TemplateError
from runner.core.models import Comparison, ComparisonItem, Prediction, Project, TaskType
from runner.core.policy import Action, decide, perform
from runner.data import examples, gates, projects, textnorm
from runner.registry import abtests, pilot, versions
from runner.slack import payloads
from runner.slack.client import TRANSIENT, call, must_call, try_call

log = logging.getLogger(__name__)

# One button per label (few labels), or one select menu of labels (many): see payloads.conflicts.
ADJUDICATE_ACTION = re.compile(r"^adjudicate_(\d+|select)$")
CONFLICTS_PAGE_ACTION = "conflicts_page"
MENTIONED_USER = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
# reactions.add / reactions.remove are rate-limited per workspace (Slack's tier 3, about 50 a
# minute): a burst of votes flips marks a few at a time, one batch per tally refresh.
MAX_WARNING_FLIPS = 5
# Slack's answers to reactions.add / reactions.remove that mean the mark already is as wanted.
ALREADY = {"already_reacted", "no_reaction"}


def ephemeral(client: WebClient, channel: str, user: str, text: str, **extra: Any) -> None:
    answers.tell(client, channel=channel, user=user, text=text, **extra)


# --- the live tally ------------------------------------------------------------------------------


def refresh_tally(deps: Deps, client: WebClient, project_id: int) -> None:
    """Bring Slack in line with the database for one project (called through the per-project throttle,
    so refreshes never overlap): the :warning: reactions on conflicts, then the tally message.

    A mark is claimed in the database before its Slack call (so two replicas never add it twice)
    and given back when the call fails; the project stays ``tally_dirty`` until a refresh has gone
    through completely, and the repair pass (`bot.tally.Repairer`) retries it until then. Once Slack
    says "not now" (rate limits beyond the budget), the rest of the refresh is left to that pass.
    """
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
            (e.id or 0, e.channel_id, e.message_ts, e.id in conflicted)
            for e in pending[:MAX_WARNING_FLIPS]
            if examples.claim_warning_change(session, e.id or 0, e.id in conflicted)
        ]
        payload = payloads.project_root(stats)
        channel, root_ts = project.channel_id, project.root_ts
        projects.mark_tally(session, project_id, dirty=True)  # until this refresh has gone through
    complete, slack_busy = len(pending) <= MAX_WARNING_FLIPS, False
    for example_id, example_channel, example_ts, marked in flips:
        error = "not tried" if slack_busy else _set_warning(client, example_channel, example_ts, marked)
        if error is not None:
            complete, slack_busy = False, slack_busy or error in TRANSIENT
            with session_scope(deps.engine) as session:  # give the claim back: the mark is not there
                examples.claim_warning_change(session, example_id, not marked)
    updated = None if slack_busy else call(client, "chat_update", channel=channel, ts=root_ts, **payload)
    if updated is not None and complete:
        with session_scope(deps.engine) as session:
            projects.mark_tally(session, project_id, dirty=False)
    if len(pending) > MAX_WARNING_FLIPS:
        deps.tally.touch(project_id)  # the rest in the next refresh, one interval later


def _set_warning(client: WebClient, channel: str, ts: str, marked: bool) -> str | None:
    """Add (or remove) ftbot's :warning: on a message; Slack's error, or None once it is as wanted."""
    mark = {"channel": channel, "timestamp": ts, "name": projects.WARNING_EMOJI}
    if marked:
        done, error = try_call(client, "reactions_add", **mark)
    else:
        done, error = try_call(client, "reactions_remove", **mark)
    return None if done is not None or error in ALREADY else error


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
    """The project id a thread's root message names in its metadata, if it is a project root.

    Raises:
        SlackUnavailable: Slack is rate-limiting the call (the event is replayed later).
    """
    thread = must_call(
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
            p.id
            for p in projects.list_projects(session)
            if p.channel_id == channel_id and not p.root_ts and not p.root_error
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


def open_project_modal(
    client: WebClient,
    trigger_id: str,
    channel_id: str,
    interview_id: int | None,
    *,
    user_id: str,
    response_url: str | None = None,
) -> None:
    """Open the project modal. The request's `response_url` travels in the modal's metadata, so the
    person can be told what happened after the submission even where the bot may not post."""
    view = payloads.project_modal(channel_id, interview_id, response_url=response_url)
    opened, error = try_call(client, "views_open", trigger_id=trigger_id, view=view)
    if opened is None:
        answers.tell(
            client,
            channel=channel_id,
            user=user_id,
            text=f"I could not open the project form. {answers.explain(error)}",
            response_url=response_url,
        )


# --- the project modal ------------------------------------------------------------------------


def on_collect(body: dict[str, Any], client: WebClient) -> None:
    value = json.loads(body["actions"][0].get("value") or "{}")
    open_project_modal(
        client,
        body["trigger_id"],
        body["channel"]["id"],
        value.get("i"),
        user_id=body["user"]["id"],
        response_url=body.get("response_url"),
    )


def ack_project_submitted(ack: Ack, view: dict[str, Any], context: BoltContext) -> bool:
    """Check the form on the request thread: problems go back into the modal, field by field."""
    spec = spec_from_view(view["state"]["values"])
    problems = spec.problems()
    if not problems:
        with session_scope(deps_of(context).engine) as session:
            if any(p.name == spec.name for p in projects.list_projects(session)):
                problems["name"] = f"A project named {spec.name} already exists."
    if problems:
        ack(response_action="errors", errors=problems)
        return False
    ack()
    return True


def on_project_submitted(
    body: dict[str, Any], client: WebClient, view: dict[str, Any], context: BoltContext
) -> None:
    deps = deps_of(context)
    spec = spec_from_view(view["state"]["values"])
    metadata = json.loads(view.get("private_metadata") or "{}")
    user_id, channel_id = body["user"]["id"], metadata["channel"]
    response_url = metadata.get("response_url")
    try:
        with session_scope(deps.engine) as session:
            project = projects.create_project(
                session,
                spec,
                owner_id=user_id,
                channel_id=channel_id,
                interview_id=metadata.get("interview"),
            )
            project_id = project.id
    except DatasetError as exc:  # the name was taken in the meantime
        answers.tell(
            client, channel=channel_id, user=user_id, text=str(exc), response_url=response_url, direct=True
        )
        return
    assert project_id is not None
    post_root(deps, client, project_id, user_id=user_id, response_url=response_url)


def post_root(
    deps: Deps, client: WebClient, project_id: int, *, user_id: str, response_url: str | None = None
) -> bool:
    """Post a project's root message (the thread examples go in) and remember its ts.

    When Slack refuses it, the project is marked with the reason (``root_error``) and the person is
    told why and how to post it again (``/finetune repost``); True when the root is posted.
    """
    error: str | None
    try:
        with session_scope(deps.engine) as session:
            project = session.get(Project, project_id)
            assert project is not None
            root = payloads.project_root(gates.project_stats(session, project))
            metadata = payloads.root_metadata(project)
            name, channel_id = project.name, project.channel_id
        posted, error = try_call(client, "chat_postMessage", channel=channel_id, metadata=metadata, **root)
    except TemplateError as exc:  # the limits are checked at input; this would be a bug
        log.exception("project root does not render", extra={"project_id": project_id})
        posted, error = None, f"render: {exc}"[:500]
    with session_scope(deps.engine) as session:
        stored = session.get(Project, project_id)
        assert stored is not None
        if posted is not None and not stored.root_ts:
            stored.root_ts, stored.root_error = posted["ts"], None
        elif posted is None:
            stored.root_error = error or "unknown"
        session.add(stored)
    if posted is None:
        advice = answers.explain(error) if not (error or "").startswith("render") else f"({error})"
        answers.tell(
            client,
            channel=channel_id,
            user=user_id,
            text=f"Project *{name}* is saved, but I could not post its thread in <#{channel_id}>. {advice}\n"
            f"Then post it with `/finetune repost {name}`.",
            response_url=response_url,
            direct=True,
        )
        return False
    deps.tally.touch(project_id)  # count replies that raced the root's ts
    return True


def repost_root(
    deps: Deps, client: WebClient, name: str, *, user_id: str, channel_id: str, response_url: str | None
) -> None:
    """``/finetune repost``: post the root message of a project whose root Slack refused before."""
    try:
        with session_scope(deps.engine) as session:
            project = projects.get_project(session, name)
            project_id, channel_id, root_ts = project.id, project.channel_id, project.root_ts
    except DatasetError as exc:
        answers.tell(client, channel=channel_id, user=user_id, text=str(exc), response_url=response_url)
        return
    assert project_id is not None
    if root_ts:
        answers.tell(
            client,
            channel=channel_id,
            user=user_id,
            text=f"The thread of *{name}* is already posted in <#{channel_id}>.",
            response_url=response_url,
        )
        return
    if post_root(deps, client, project_id, user_id=user_id, response_url=response_url):
        answers.tell(
            client,
            channel=channel_id,
            user=user_id,
            text=f"Posted the thread of *{name}* in <#{channel_id}>.",
            response_url=response_url,
        )


# --- examples: thread replies, edits, deletions ------------------------------------------------


def _not_a_contribution(message: dict[str, Any], bot_user_id: str | None) -> bool:
    """Bot and integration messages, the bot's own, and questions to the bot (mentions)."""
    user = message.get("user")
    return (
        not user
        or bool(message.get("bot_id") or message.get("bot_profile"))
        or message.get("subtype") == "bot_message"
        or (
            bot_user_id is not None
            and (user == bot_user_id or f"<@{bot_user_id}" in str(message.get("text") or ""))
        )
    )


def on_message(event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    deps = deps_of(context)
    subtype = event.get("subtype")
    if subtype == "message_changed":
        on_edit(deps, event, client, context.get("bot_user_id"))
    elif subtype == "message_deleted":
        on_delete(deps, event)
    elif subtype in (None, "thread_broadcast", "file_share"):
        top_level = event.get("thread_ts") in (None, event.get("ts"))
        if top_level and event.get("ts") and not _not_a_contribution(event, context.get("bot_user_id")):
            pilot_listeners.on_top_level_message(deps, event, lambda text: plain_text(deps, client, text))
            return
        on_reply(deps, event, client, context.get("bot_user_id"))


def on_reply(deps: Deps, event: dict[str, Any], client: WebClient, bot_user_id: str | None = None) -> None:
    thread_ts = event.get("thread_ts")
    if not thread_ts or thread_ts == event.get("ts") or _not_a_contribution(event, bot_user_id):
        return
    if pilot_listeners.on_thread_reply(deps, client, event, lambda text: plain_text(deps, client, text)):
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


def on_edit(deps: Deps, event: dict[str, Any], client: WebClient, bot_user_id: str | None = None) -> None:
    """An edited message. Slack also sends ``message_changed`` when nothing a person wrote changed (a
    link unfurled, a reply broadcast, a reply count): those leave the example and its votes alone."""
    message = event.get("message") or {}
    previous = event.get("previous_message") or {}
    ts = message.get("ts") or previous.get("ts")
    if not ts or message.get("text") == previous.get("text") or _not_a_contribution(message, bot_user_id):
        return
    thread_ts = message.get("thread_ts")
    if (
        thread_ts
        and thread_ts != ts
        and pilot_listeners.on_thread_reply(
            deps,
            client,
            {**message, "channel": event["channel"]},
            lambda text: plain_text(deps, client, text),
        )
    ):
        return  # an edited reply in a pilot thread: a correction, perhaps
    text = plain_text(deps, client, str(message.get("text") or ""))
    try:
        with session_scope(deps.engine) as session:
            found = examples.edit_example(session, event["channel"], ts, text)
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
    deleted_ts = event.get("deleted_ts") or (event.get("previous_message") or {}).get("ts")
    if not deleted_ts:
        return
    with session_scope(deps.engine) as session:
        found = examples.delete_example(session, event["channel"], str(deleted_ts))
        project_id = found[0].id if found else None
        corrected = pilot.reply_deleted(session, event["channel"], str(deleted_ts))
    if project_id is not None:
        deps.tally.touch(project_id)
    for changed in corrected:
        deps.tally.touch(changed)
        pilot_listeners.after_review(deps, changed)


# --- votes from reactions -----------------------------------------------------------------------


def adopt(deps: Deps, client: WebClient, channel: str, ts: str, bot_user_id: str | None) -> bool:
    """Events are not ordered: a reaction can arrive before the message event of the reply it is on.
    An unknown message in a project channel is read from Slack and, if it is a reply in a project
    thread, added first. True when it was added.

    Raises:
        SlackUnavailable: Slack is rate-limiting the call (the event is replayed later).
    """
    thread = must_call(client, "conversations_replies", channel=channel, ts=ts, limit=200)
    replies: list[dict[str, Any]] = thread.get("messages", []) if thread else []
    message = next((m for m in replies if m.get("ts") == ts), None)
    if message is None:
        return False
    on_reply(deps, {**message, "channel": channel}, client, bot_user_id)
    return True


@dataclass(frozen=True)
class _Reaction:
    """What one reaction came to (the outcome of `_count`)."""

    project: Project | None = None  # the example's project, when the reaction is on an example
    counted: bool = False  # a vote was added or retracted
    reviewer: bool = True  # False: the person is not a reviewer of the project
    # Not on a known example, but a label in some project of the channel: worth reading the message
    # from Slack (👍 on ordinary chatter costs nothing).
    worth_adopting: bool = False
    review: bool = False  # a review of a pilot suggestion
    comparison_id: int | None = None  # a vote on an item of this blind A/B
    tell: str | None = None  # what to tell the person who reacted (ephemeral), in `thread_ts`
    thread_ts: str | None = None


def _count(deps: Deps, channel: str, ts: str, user: str, emoji: str, added: bool) -> _Reaction:
    """One unit of work: find the example, decide whether the person may vote (user groups from the
    cache: `DirectoryMiss` when one is not cached), record or retract the vote, and settle the event
    in the same transaction.

    Reactions come in bursts of hundreds (a labeling session), so this is the bot's hottest path.
    """
    with session_scope(deps.engine) as session:
        found = examples.vote_target(session, channel, ts)
        if found is None:
            reviewed = pilot.review_target(session, channel, ts)
            if reviewed is not None:
                outcome = _review(deps, session, reviewed, user, emoji, added)
                inbox.settle_with(session)
                return outcome
            compared = abtests.item_at(session, channel, ts)
            if compared is not None:
                outcome = _ab_vote(deps, session, compared, user, emoji, added)
                inbox.settle_with(session)
                return outcome
            return _Reaction(worth_adopting=emoji in projects.legend_emoji_in_channel(session, channel))
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


def _review(
    deps: Deps, session: Session, reviewed: tuple[Project, Prediction], user: str, emoji: str, added: bool
) -> _Reaction:
    """A reaction on a pilot suggestion: a review when it is ✅, a label's emoji or ❌ (the reviewer's reply
    in the thread is then their correction), by a reviewer."""
    project, prediction = reviewed
    value = pilot.vote_value(project, prediction, emoji)
    rejected = emoji == projects.REJECT_EMOJI
    if value is None and not rejected:
        return _Reaction(project)
    if not decide(deps.settings, project, Action.VOTE, deps.person_cached(user)).allowed:
        return _Reaction(project, reviewer=False)
    counted, tell = False, None
    if rejected:
        corrected = pilot.reject(session, project, prediction, user, added=added)
        counted, tell = corrected.changed, corrected.tell
    if value is not None:  # for drafts ❌ also rejects the draft itself
        counted = pilot.review(session, project, prediction, user, value, added=added) or counted
    return _Reaction(project, counted=counted, review=True, tell=tell, thread_ts=prediction.message_ts)


def _ab_vote(
    deps: Deps,
    session: Session,
    found: tuple[Project, Comparison, ComparisonItem],
    user: str,
    emoji: str,
    added: bool,
) -> _Reaction:
    """A reaction on a blind A/B item: a vote when it is 🅰️, 🅱️ or 🟰, by a reviewer, while open."""
    project, comparison, _item = found
    if emoji not in abtests.EMOJI:
        return _Reaction(project)
    if not decide(deps.settings, project, Action.VOTE, deps.person_cached(user)).allowed:
        return _Reaction(project, reviewer=False)
    counted = compare_listeners.vote(session, found, user, emoji, added)
    return _Reaction(project, counted=bool(counted), comparison_id=comparison.id)


def on_reaction(event: dict[str, Any], client: WebClient, context: BoltContext, added: bool) -> None:
    deps = deps_of(context)
    item = event.get("item") or {}
    user = event.get("user", "")
    bot_user_id = context.get("bot_user_id")
    if item.get("type") != "message" or not user or user == bot_user_id:
        return
    emoji = str(event.get("reaction", "")).split("::")[0]
    channel, ts = item.get("channel", ""), item.get("ts", "")
    outcome = _Reaction()
    for _attempt in range(3):  # a group to look up, a message to adopt: each done outside the unit
        try:
            outcome = _count(deps, channel, ts, user, emoji, added)
        except DirectoryMiss as miss:
            deps.directory.group_members(client, miss.group_id)
            continue
        if (
            outcome.project is None
            and outcome.worth_adopting
            and adopt(deps, client, channel, ts, bot_user_id)
        ):
            continue
        break
    project = outcome.project
    if project is None or project.id is None:
        return
    if outcome.tell:
        ephemeral(client, channel, user, outcome.tell, thread_ts=outcome.thread_ts)
    if outcome.counted and outcome.comparison_id is not None:
        compare_listeners.after_vote(deps, outcome.comparison_id)
    elif outcome.counted:
        deps.tally.touch(project.id)
        if outcome.review:
            pilot_listeners.after_review(deps, project.id)
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


def on_add_shortcut(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
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
    opened, error = try_call(client, "views_open", trigger_id=body["trigger_id"], view=view)
    if opened is None:
        answers.tell(
            client,
            channel=channel_id,
            user=body["user"]["id"],
            text=f"I could not open the form. {answers.explain(error)}",
            response_url=body.get("response_url"),
        )


def on_add_submitted(
    body: dict[str, Any], client: WebClient, view: dict[str, Any], context: BoltContext
) -> None:
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


def _chosen_label(action: dict[str, Any]) -> str:
    if action.get("type") == "static_select":
        return str(((action.get("selected_option") or {}).get("value")) or "")
    return str(json.loads(action.get("value") or "{}").get("l", ""))


def _conflict_target(action: dict[str, Any]) -> tuple[str, int]:
    """(project name, example id) a settle press is about, from the block it was in."""
    if action.get("type") == "static_select":  # the select's value is only the label (options hold 150 chars)
        _, project, example_id = str(action.get("block_id", "")).split(":", 2)
        return project, int(example_id)
    value = json.loads(action.get("value") or "{}")
    return str(value.get("p", "")), int(value.get("e", 0))


def _channel_of(body: dict[str, Any]) -> str:
    return str((body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id", ""))


def on_adjudicate(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    """An owner settles a conflict. It acts only while the example is still in conflict (an old
    list's buttons settle nothing twice), and the list is replaced in place with what is left."""
    deps = deps_of(context)
    action = body["actions"][0]
    name, example_id = _conflict_target(action)
    label = _chosen_label(action)
    user_id = body["user"]["id"]
    page = int(json.loads(action.get("value") or "{}").get("pg", 0)) if action.get("type") == "button" else 0

    def settle(session: Session, project: Project) -> gates.ProjectStats:
        gates.settle_conflict(session, project, example_id, label, user_id)
        return gates.project_stats(session, project)

    try:
        stats = perform(
            deps.engine,
            deps.settings,
            Action.SETTLE,
            deps.person(client, user_id),
            load=lambda session: projects.get_project(session, name),
            work=settle,
            target=f"example {example_id} → {label}",
        )
    except FtbotError as exc:
        ephemeral(client, _channel_of(body), user_id, str(exc), response_url=body.get("response_url"))
        _refresh_list(deps, client, body, name, page)
        return
    deps.tally.touch(stats.project.id or 0)
    _show_list(client, body, payloads.conflicts(stats, page=page))


def on_conflicts_page(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    """``Show more``: the next page of conflicts, in place of the list."""
    value = json.loads(body["actions"][0].get("value") or "{}")
    _refresh_list(deps_of(context), client, body, str(value.get("p", "")), int(value.get("pg", 0)))


def _refresh_list(deps: Deps, client: WebClient, body: dict[str, Any], name: str, page: int) -> None:
    try:
        with session_scope(deps.engine) as session:
            stats = gates.project_stats(session, projects.get_project(session, name))
    except DatasetError:
        return
    _show_list(client, body, payloads.conflicts(stats, page=page))


def _show_list(client: WebClient, body: dict[str, Any], payload: dict[str, Any]) -> None:
    """Replace the list that was pressed (through its response URL); a new ephemeral if that fails."""
    if not answers.via_response_url(body.get("response_url"), payload, replace=True):
        answers.to_person(client, channel=_channel_of(body), user=body["user"]["id"], payload=payload)


# --- App Home --------------------------------------------------------------------------------------


def on_home(event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    if event.get("tab", "home") != "home" or not event.get("user"):
        return
    deps = deps_of(context)
    with session_scope(deps.engine) as session:
        every = projects.list_projects(session)
        shown = every[: payloads.MAX_HOME_PROJECTS]
        pilots = {}
        for project in shown:
            piloted = pilot.pilot_of(session, project)
            rows = [row.to_dict() for row in pilot.project_acceptance(session, project)]
            if piloted is None and not rows:
                continue
            alerts = pilot.open_alerts(session, project)
            numbers = {v.id: v.number for v in versions.versions(session, project)}
            pilots[project.name] = payloads.pilot_line(
                piloted.channel_id if piloted else None,
                bool(piloted and piloted.enabled),
                rows,
                [numbers.get(a.version_id, 0) for a in alerts],
            )
        ab = {p.name: line for p in shown if (line := abtests.home_line(session, p))}
        view = payloads.home(
            [gates.project_stats(session, p) for p in shown], total=len(every), pilots=pilots, ab=ab
        )
    call(client, "views_publish", user_id=event["user"], view=view)
