"""Dataset projects in Slack: the project modal, examples from thread replies and the message
shortcut, votes from reactions, conflicts, status, the live tally and the App Home tab.
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from runner import audit, datasets, textnorm
from runner.datasets import ProjectStats
from runner.db import session_scope
from runner.exceptions import DatasetError
from runner.models import Example, Project
from runner.render import render
from runner.slackapi import call

if TYPE_CHECKING:
    from bot.app import Deps

log = logging.getLogger(__name__)

ADJUDICATE_ACTION = re.compile(r"^adjudicate_\d+$")
MENTIONED_USER = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
MAX_CONFLICTS_SHOWN = 15  # two blocks each, within a message's 50
MAX_HOME_PROJECTS = 30  # three blocks each, within the Home tab's 100
ROOT_METADATA = "ftbot_project_root"
# reactions.add / reactions.remove are rate-limited per workspace (Slack's tier 3, about 50 a
# minute): a burst of votes flips marks a few at a time, one batch per tally refresh.
MAX_WARNING_FLIPS = 5


# --- rendering --------------------------------------------------------------------------------


def _emoji_legend(project: Project) -> list[str]:
    return [f":{emoji}: {value}" for emoji, value in datasets.legend(project).items()]


def _agreement_text(stats: ProjectStats) -> str:
    summary = stats.agreement
    if summary.kappa is None:
        return "not enough overlapping votes yet"
    name = "Cohen's κ" if summary.method == "cohen" else "Krippendorff's α"
    percent = f", {summary.percent:.0%} raw" if summary.percent is not None else ""
    return f"{name} {summary.kappa:.2f}{percent}"


def root_payload(deps: Deps, client: WebClient, stats: ProjectStats) -> dict[str, Any]:
    project = stats.project
    users, groups = datasets.reviewers_of(project)
    return render(
        "project_root.json.j2",
        name=project.name,
        task_type=project.task_type,
        legend=_emoji_legend(project),
        total=stats.total,
        pending=stats.pending,
        conflicts=len(stats.conflicts),
        agreement=_agreement_text(stats),
        gates_passed=sum(1 for g in stats.gates if g.passed),
        gates_total=len(stats.gates),
        trainable=stats.trainable,
        counts=[f"{label}: {n}" for label, n in stats.counts.items()],
        reviewers=[f"<@{u}>" for u in users] + [f"<!subteam^{g}>" for g in groups],
    )


def status_payload(stats: ProjectStats, *, can_train: bool) -> dict[str, Any]:
    return render(
        "project_status.json.j2",
        name=stats.project.name,
        gates=[g.__dict__ for g in stats.gates],
        trainable=stats.trainable,
        can_train=can_train,
        total=stats.total,
        pending=stats.pending,
        rejected=stats.rejected,
        overlong=stats.overlong,
        stale=stats.stale_votes,
    )


def conflicts_payload(stats: ProjectStats) -> dict[str, Any]:
    legend = datasets.legend(stats.project)
    choices = [{"label": f"{value} :{emoji}:", "value": value} for emoji, value in legend.items()]
    items = [
        {
            "id": s.example.id,
            "input": s.example.input_text,
            "target": s.example.target_text or "",
            "votes": ", ".join(f"{value} ×{n}" for value, n in s.consensus.counts.items()),
        }
        for s in stats.conflicts[:MAX_CONFLICTS_SHOWN]
    ]
    return render(
        "conflicts.json.j2", name=stats.project.name, items=items, total=len(stats.conflicts), choices=choices
    )


def home_view(deps: Deps) -> dict[str, Any]:
    projects = []
    with session_scope(deps.engine) as session:
        for project in datasets.list_projects(session)[:MAX_HOME_PROJECTS]:
            stats = datasets.project_stats(session, project)
            projects.append(
                {
                    "name": project.name,
                    "task_type": project.task_type,
                    "channel_id": project.channel_id,
                    "total": stats.total,
                    "passed": sum(1 for g in stats.gates if g.passed),
                    "trainable": stats.trainable,
                    "gates": [{"line": gate_line(g)} for g in stats.gates],
                }
            )
    return render("home.json.j2", surface="home", projects=projects)


def gate_line(gate: datasets.Gate) -> str:
    return f"{':white_check_mark:' if gate.passed else ':x:'} {gate.name}: {gate.value} ({gate.threshold})"


def notice(text: str) -> dict[str, Any]:
    return render("notice.json.j2", text=text)


# --- the live tally ------------------------------------------------------------------------------


def refresh_tally(deps: Deps, client: WebClient, project_id: int) -> None:
    """Bring Slack in line with the database for one project (called through the per-project throttle,
    so refreshes never overlap): the :warning: reactions on conflicts, then the tally message."""
    with session_scope(deps.engine) as session:
        project = session.get(Project, project_id)
        if project is None or project.root_ts is None:
            return
        stats = datasets.project_stats(session, project)
        conflicted = {s.example.id for s in stats.conflicts}
        pending = [
            s.example for s in stats.examples if (s.example.id in conflicted) != s.example.warning_marked
        ]
        flips = [
            e
            for e in pending[:MAX_WARNING_FLIPS]
            if datasets.claim_warning_change(session, e.id or 0, e.id in conflicted)
        ]
        payload = root_payload(deps, client, stats)
    for example in flips:
        method = "reactions_add" if example.id in conflicted else "reactions_remove"
        call(
            client,
            method,
            channel=example.channel_id,
            timestamp=example.message_ts,
            name=datasets.WARNING_EMOJI,
        )
    call(client, "chat_update", channel=project.channel_id, ts=project.root_ts, **payload)
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


def spec_from_view(values: dict[str, Any]) -> datasets.ProjectSpec:
    def number(block_id: str, default: float) -> float:
        raw = _input_value(values, block_id)
        try:
            return float(raw) if raw not in (None, "") else default
        except ValueError:
            return -1.0

    groups = _input_value(values, "reviewer_groups") or ""
    return datasets.ProjectSpec(
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


def plain_users(deps: Deps, client: WebClient, text: str) -> dict[str, str]:
    """Display names of the users mentioned in `text`, for normalising mentions to plain text."""
    return {uid: deps.directory.display_name(client, uid) for uid in set(MENTIONED_USER.findall(text))}


def claim_root(session: Any, client: WebClient, channel_id: str, thread_ts: str) -> Project | None:
    """A reply can arrive before the new project's root ts is stored (it is known only once
    chat.postMessage returns). While a project in this channel has no root yet, read the thread's
    root from Slack: ftbot's root messages carry the project id in their metadata."""
    pending = [p for p in datasets.list_projects(session) if p.channel_id == channel_id and p.root_ts is None]
    if not pending:  # the root may have been stored since the caller looked
        return datasets.project_for_thread(session, channel_id, thread_ts)
    thread = call(
        client, "conversations_replies", channel=channel_id, ts=thread_ts, limit=1, include_all_metadata=True
    )
    messages: list[dict[str, Any]] = thread.get("messages", []) if thread else []
    metadata = (messages[0].get("metadata") or {}) if messages else {}
    if metadata.get("event_type") != ROOT_METADATA:
        return None
    project = next((p for p in pending if p.id == metadata.get("event_payload", {}).get("project_id")), None)
    if project is not None:
        project.root_ts = thread_ts
        session.add(project)
        session.commit()
    return project


def open_project_modal(
    deps: Deps, client: WebClient, trigger_id: str, channel_id: str, interview_id: int | None
) -> None:
    view = render(
        "project_modal.json.j2",
        surface="modal",
        metadata=json.dumps({"channel": channel_id, "interview": interview_id}),
        channel_id=channel_id,
        name=None,
    )
    call(client, "views_open", trigger_id=trigger_id, view=view)


# --- listeners -------------------------------------------------------------------------------------


def register(app: App, deps: Deps) -> None:  # noqa: C901 — one short listener per Slack surface
    @app.action("collect_examples")
    def on_collect(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        value = json.loads(body["actions"][0].get("value") or "{}")
        open_project_modal(deps, client, body["trigger_id"], body["channel"]["id"], value.get("i"))

    @app.view("project_new")
    def on_project_submitted(ack: Ack, body: dict[str, Any], client: WebClient, view: dict[str, Any]) -> None:
        spec = spec_from_view(view["state"]["values"])
        problems = spec.problems()
        if not problems:
            with session_scope(deps.engine) as session:
                taken = any(p.name == spec.name for p in datasets.list_projects(session))
            if taken:
                problems["name"] = f"A project named {spec.name} already exists."
        if problems:
            ack(response_action="errors", errors=problems)
            return
        ack()
        metadata = json.loads(view.get("private_metadata") or "{}")
        user_id = body["user"]["id"]
        try:
            with session_scope(deps.engine) as session:
                project = datasets.create_project(
                    session,
                    spec,
                    owner_id=user_id,
                    channel_id=metadata["channel"],
                    interview_id=metadata.get("interview"),
                )
                stats = datasets.project_stats(session, project)
        except DatasetError as exc:
            call(client, "chat_postEphemeral", channel=metadata["channel"], user=user_id, **notice(str(exc)))
            return
        posted = call(
            client,
            "chat_postMessage",
            channel=project.channel_id,
            metadata={"event_type": ROOT_METADATA, "event_payload": {"project_id": project.id}},
            **root_payload(deps, client, stats),
        )
        if posted is None:
            call(
                client,
                "chat_postEphemeral",
                channel=project.channel_id,
                user=user_id,
                **notice(
                    "I created the project but cannot post in this channel: invite me with `/invite @ftbot`."
                ),
            )
            return
        with session_scope(deps.engine) as session:
            stored = session.get(Project, project.id)
            assert stored is not None
            stored.root_ts = posted["ts"]
            session.add(stored)
        deps.tally.touch(project.id or 0)  # count replies that raced the root's ts

    @app.event("message")
    def on_message(event: dict[str, Any], client: WebClient) -> None:
        subtype = event.get("subtype")
        if subtype == "message_changed":
            on_edit(event, client)
        elif subtype == "message_deleted":
            on_delete(event, client)
        elif subtype in (None, "thread_broadcast", "file_share") and not event.get("bot_id"):
            on_reply(event, client)

    def on_reply(event: dict[str, Any], client: WebClient) -> None:
        thread_ts = event.get("thread_ts")
        if not thread_ts or thread_ts == event.get("ts") or not event.get("user") or event.get("bot_id"):
            return
        text = str(event.get("text") or "")
        with session_scope(deps.engine) as session:
            project = datasets.project_for_thread(session, event["channel"], thread_ts) or claim_root(
                session, client, event["channel"], thread_ts
            )
            if project is None:
                return
            try:
                _, created = datasets.add_example(
                    session,
                    project,
                    channel_id=event["channel"],
                    message_ts=event["ts"],
                    author_id=event["user"],
                    text=textnorm.slack_to_plain(text, users=plain_users(deps, client, text)),
                )
            except DatasetError as exc:
                call(
                    client,
                    "chat_postEphemeral",
                    channel=event["channel"],
                    user=event["user"],
                    thread_ts=thread_ts,
                    **notice(f"Not added to {project.name}: {exc}"),
                )
                return
        if created:
            deps.tally.touch(project.id or 0)

    def on_edit(event: dict[str, Any], client: WebClient) -> None:
        message = event.get("message") or {}
        text = str(message.get("text") or "")
        try:
            with session_scope(deps.engine) as session:
                found = datasets.edit_example(
                    session,
                    event["channel"],
                    message.get("ts", ""),
                    textnorm.slack_to_plain(text, users=plain_users(deps, client, text)),
                )
        except DatasetError as exc:
            if message.get("user"):
                call(
                    client,
                    "chat_postEphemeral",
                    channel=event["channel"],
                    user=message["user"],
                    **notice(f"Your edit was not applied to the dataset: {exc}"),
                )
            return
        if found:
            project, example = found
            deps.tally.touch(project.id or 0)

    def on_delete(event: dict[str, Any], client: WebClient) -> None:
        with session_scope(deps.engine) as session:
            found = datasets.delete_example(session, event["channel"], str(event.get("deleted_ts", "")))
        if found:
            deps.tally.touch(found[0].id or 0)

    def find_or_adopt(client: WebClient, channel: str, ts: str) -> tuple[Project, Example] | None:
        """The example a reaction is on. Events are not ordered: a reaction can arrive before the
        message event of a reply it is on, so an unknown message in a project channel is read from
        Slack and, if it is a reply in a project thread, added first."""
        with session_scope(deps.engine) as session:
            found = datasets.example_at(session, channel, ts)
            if found is not None or channel not in datasets.project_channels(session):
                return found
        thread = call(client, "conversations_replies", channel=channel, ts=ts, limit=200)
        replies: list[dict[str, Any]] = thread.get("messages", []) if thread else []
        message = next((m for m in replies if m.get("ts") == ts), None)
        if message is None:
            return None
        on_reply({**message, "channel": channel}, client)
        with session_scope(deps.engine) as session:
            return datasets.example_at(session, channel, ts)

    def on_reaction(event: dict[str, Any], client: WebClient, context: dict[str, Any], added: bool) -> None:
        item = event.get("item") or {}
        user = event.get("user", "")
        if item.get("type") != "message" or user == context.get("bot_user_id"):
            return
        emoji = str(event.get("reaction", "")).split("::")[0]
        found = find_or_adopt(client, item.get("channel", ""), item.get("ts", ""))
        if found is None:
            return
        with session_scope(deps.engine) as session:
            project, example = found
            value = datasets.legend(project).get(emoji)
            if value is None:
                return
            users, groups = datasets.reviewers_of(project)
            if not deps.directory.is_member(client, user, users, groups):
                if added and datasets.hint_once(session, project, user):
                    call(
                        client,
                        "chat_postEphemeral",
                        channel=item["channel"],
                        user=user,
                        **notice(
                            f"Thanks! Only the reviewers of *{project.name}* label its examples, so your "
                            f"reaction is not counted as a vote."
                        ),
                    )
                return
            if added:
                changed = datasets.add_vote(session, example, user, value)
            else:
                changed = datasets.remove_vote(session, example, user, value)
        if changed:
            deps.tally.touch(project.id or 0)

    @app.event("reaction_added")
    def on_reaction_added(event: dict[str, Any], client: WebClient, context: dict[str, Any]) -> None:
        on_reaction(event, client, context, added=True)

    @app.event("reaction_removed")
    def on_reaction_removed(event: dict[str, Any], client: WebClient, context: dict[str, Any]) -> None:
        on_reaction(event, client, context, added=False)

    @app.shortcut("add_to_dataset")
    def on_add_shortcut(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        message = body.get("message") or {}
        channel_id = (body.get("channel") or {}).get("id", "")
        with session_scope(deps.engine) as session:
            projects = datasets.list_projects(session)
        if not projects:
            call(
                client,
                "chat_postEphemeral",
                channel=channel_id,
                user=body["user"]["id"],
                **notice("There is no dataset project yet: create one with `/finetune new`."),
            )
            return
        in_thread = bool(message.get("thread_ts")) and message.get("thread_ts") != message.get("ts")
        metadata = {
            "channel": channel_id,
            "ts": message.get("ts"),
            "thread_ts": message.get("thread_ts") if in_thread else None,
        }
        view = render(
            "add_to_dataset_modal.json.j2",
            surface="modal",
            metadata=json.dumps(metadata),
            projects=[{"name": p.name, "task_type": p.task_type} for p in projects[:100]],
            in_thread=in_thread,
            preview=textnorm.slack_to_plain(str(message.get("text") or "")),
        )
        call(client, "views_open", trigger_id=body["trigger_id"], view=view)

    @app.view("add_to_dataset")
    def on_add_submitted(ack: Ack, body: dict[str, Any], client: WebClient, view: dict[str, Any]) -> None:
        ack()
        metadata = json.loads(view.get("private_metadata") or "{}")
        user_id = body["user"]["id"]
        name = _input_value(view["state"]["values"], "project") or ""
        channel_id, ts, thread_ts = metadata["channel"], metadata["ts"], metadata.get("thread_ts")
        history = call(client, "conversations_replies", channel=channel_id, ts=thread_ts or ts, limit=200)
        found: list[dict[str, Any]] = history.get("messages", []) if history else []
        messages = {m.get("ts"): m for m in found}
        chosen, root = messages.get(ts), messages.get(thread_ts) if thread_ts else None
        if chosen is None or (thread_ts and root is None):
            call(
                client,
                "chat_postEphemeral",
                channel=channel_id,
                user=user_id,
                **notice("I could not read that message; is the bot in the channel?"),
            )
            return
        try:
            with session_scope(deps.engine) as session:
                project = datasets.get_project(session, name)
                text = str(chosen.get("text") or "")
                plain = textnorm.slack_to_plain(text, users=plain_users(deps, client, text))
                if root is not None and project.task_type != "classification":
                    root_text = str(root.get("text") or "")
                    source = textnorm.slack_to_plain(root_text, users=plain_users(deps, client, root_text))
                    _, created = datasets.add_example(
                        session,
                        project,
                        channel_id=channel_id,
                        message_ts=ts,
                        author_id=chosen.get("user", ""),
                        text=source,
                        target=plain,
                        source="shortcut",
                    )
                else:
                    _, created = datasets.add_example(
                        session,
                        project,
                        channel_id=channel_id,
                        message_ts=ts,
                        author_id=chosen.get("user", ""),
                        text=plain,
                        source="shortcut",
                    )
        except DatasetError as exc:
            call(
                client, "chat_postEphemeral", channel=channel_id, user=user_id, **notice(f"Not added: {exc}")
            )
            return
        call(
            client,
            "chat_postEphemeral",
            channel=channel_id,
            user=user_id,
            **notice(
                f"Added to *{project.name}*. Reviewers label it by reacting on the message."
                if created
                else f"That message is already in *{project.name}*."
            ),
        )
        deps.tally.touch(project.id or 0)

    @app.action(ADJUDICATE_ACTION)
    def on_adjudicate(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        value = json.loads(body["actions"][0].get("value") or "{}")
        user_id = body["user"]["id"]
        channel_id = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
            "channel_id", ""
        )
        try:
            with session_scope(deps.engine) as session:
                project = datasets.get_project(session, value["p"])
                allowed = datasets.is_owner(project, user_id, deps.settings.ftbot_admins)
                audit.record(
                    session,
                    user_id=user_id,
                    action="adjudicate",
                    allowed=allowed,
                    project_id=project.id,
                    target=f"example {value['e']} → {value['l']}",
                )
                datasets.adjudicate(
                    session, project, int(value["e"]), str(value["l"]), user_id, deps.settings.ftbot_admins
                )
                stats = datasets.project_stats(session, project)
        except DatasetError as exc:
            call(client, "chat_postEphemeral", channel=channel_id, user=user_id, **notice(str(exc)))
            return
        deps.tally.touch(project.id or 0)
        call(client, "chat_postEphemeral", channel=channel_id, user=user_id, **conflicts_payload(stats))

    @app.event("app_home_opened")
    def on_home(event: dict[str, Any], client: WebClient) -> None:
        if event.get("tab", "home") == "home":
            call(client, "views_publish", user_id=event["user"], view=home_view(deps))
