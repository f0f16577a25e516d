"""The `/finetune` slash command and its subcommands.

`SUBCOMMANDS` is the one table of what the command can do: `/finetune help` is rendered from it and
dispatch reads it, so the help can never miss a subcommand.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, BoltContext, Respond
from slack_sdk import WebClient

from bot.deps import Deps, deps_of
from bot.listeners import answers, interview
from bot.listeners import compare as compare_listeners
from bot.listeners import datasets as datasets_listeners
from bot.listeners import pilot as pilot_listeners
from bot.listeners import registry as registry_listeners
from bot.listeners import training as training_listeners
from runner.core import audit
from runner.core.db import session_scope
from runner.core.exceptions import DatasetError
from runner.core.models import AuditEntry
from runner.core.policy import Action, decide
from runner.core.redaction import redact
from runner.data import dawid_skene, gates, projects, reliability
from runner.interview import interviews
from runner.slack import payloads
from runner.slack.render import render

COMMAND = "/finetune"
NOT_IN_CHANNEL = {"channel_not_found", "not_in_channel", "is_archived"}


@dataclass(frozen=True)
class Invocation:
    """One use of the command, parsed."""

    deps: Deps
    body: dict[str, Any]
    args: list[str]
    client: WebClient
    respond: Respond

    @property
    def channel_id(self) -> str:
        return str(self.body["channel_id"])

    @property
    def user_id(self) -> str:
        return str(self.body["user_id"])


@dataclass(frozen=True)
class Subcommand:
    name: str
    usage: str
    summary: str
    run: Callable[[Invocation], None]

    @property
    def line(self) -> str:
        return f"`{COMMAND} {self.usage}` — {self.summary}"


def help_payload(unknown: str | None = None) -> dict[str, Any]:
    listed = [{"usage": f"{COMMAND} {s.usage}".strip(), "line": s.line} for s in SUBCOMMANDS.values()]
    return render("help.json.j2", command=COMMAND, commands=listed, unknown=unknown)


def start(inv: Invocation) -> None:
    error = interview.begin(
        inv.deps,
        inv.client,
        channel_id=inv.channel_id,
        user_id=inv.user_id,
        team_id=str(inv.body.get("team_id", "")),
        topic=" ".join(inv.args),
        source="slash",
    )
    if error in NOT_IN_CHANNEL:
        inv.respond(
            response_type="ephemeral",
            text=f"I can't post in this channel ({error}). Invite me with `/invite @ftbot`, then try again.",
        )
    elif error:
        inv.respond(response_type="ephemeral", text=f"Slack refused my message ({error}); please try again.")


def history(inv: Invocation) -> None:
    with session_scope(inv.deps.engine) as session:
        rows = interviews.history(session, channel_id=inv.channel_id)
    lines = [
        f"• {row.created_at:%Y-%m-%d %H:%M} <@{row.user_id}>"
        + (f" — {payloads.escape(row.topic[:80])}" if row.topic else "")
        + (
            f" → *{row.primary}*" + (f" (then {row.secondary})" if row.secondary else "")
            if row.primary
            else " — in progress"
        )
        for row in rows
    ]
    _ephemeral(inv, render("history.json.j2", rows=lines, command=COMMAND))


def _project_arg(inv: Invocation, usage: str) -> str | None:
    if not inv.args:
        inv.respond(response_type="ephemeral", text=f"Usage: `{COMMAND} {usage}`")
        return None
    return inv.args[0].lower()


def _ephemeral(inv: Invocation, payload: dict[str, Any]) -> None:
    """An answer only the person sees: in the channel, or through the command's response URL where
    the channel refuses the bot."""
    answers.to_person(
        inv.client,
        channel=inv.channel_id,
        user=inv.user_id,
        payload=payload,
        response_url=inv.body.get("response_url"),
    )


def new_project(inv: Invocation) -> None:
    datasets_listeners.open_project_modal(
        inv.client,
        str(inv.body["trigger_id"]),
        inv.channel_id,
        None,
        user_id=inv.user_id,
        response_url=inv.body.get("response_url"),
    )


def status(inv: Invocation) -> None:
    name = _project_arg(inv, "status <project>")
    if name is None:
        return
    try:
        with session_scope(inv.deps.engine) as session:
            stats = gates.project_stats(session, projects.get_project(session, name))
    except DatasetError as exc:
        _ephemeral(inv, payloads.notice(str(exc)))
        return
    person = inv.deps.person(inv.client, inv.user_id)
    can_train = decide(inv.deps.settings, stats.project, Action.TRAIN, person).allowed
    _ephemeral(inv, payloads.project_status(stats, can_train=can_train))


def conflicts(inv: Invocation) -> None:
    name = _project_arg(inv, "conflicts <project>")
    if name is None:
        return
    try:
        with session_scope(inv.deps.engine) as session:
            stats = gates.project_stats(session, projects.get_project(session, name))
    except DatasetError as exc:
        _ephemeral(inv, payloads.notice(str(exc)))
        return
    _ephemeral(inv, payloads.conflicts(stats))


def repost(inv: Invocation) -> None:
    name = _project_arg(inv, "repost <project>")
    if name is None:
        return
    datasets_listeners.repost_root(
        inv.deps,
        inv.client,
        name,
        user_id=inv.user_id,
        channel_id=inv.channel_id,
        response_url=inv.body.get("response_url"),
    )


def train(inv: Invocation) -> None:
    name = _project_arg(inv, "train <project> [key=value …]")
    if name is None:
        return
    training_listeners.request_training(
        inv.deps,
        inv.client,
        project_name=name,
        words=inv.args[1:],
        user_id=inv.user_id,
        channel_id=inv.channel_id,
        response_url=inv.body.get("response_url"),
    )


def _run_verb(verb: str) -> Callable[[Invocation], None]:
    """`/finetune pause <run>` / `resume <run>` (the run's number, as its status message shows it)."""

    def handle(inv: Invocation) -> None:
        words = inv.args[:1]
        if not words or not words[0].removeprefix("#").isdigit():
            inv.respond(response_type="ephemeral", text=f"Usage: `{COMMAND} {verb} <run number>`")
            return
        training_listeners.run_control(
            inv.deps,
            inv.client,
            verb=verb,
            run_id=int(words[0].removeprefix("#")),
            user_id=inv.user_id,
            channel_id=inv.channel_id,
            response_url=inv.body.get("response_url"),
        )

    return handle


def rollback(inv: Invocation) -> None:
    name = _project_arg(inv, "rollback <project> [vN] [reason]")
    if name is None:
        return
    rest = inv.args[1:]
    number = int(rest[0][1:]) if rest and re.fullmatch(r"v\d+", rest[0]) else None
    reason = " ".join(rest[1:] if number is not None else rest) or "rolled back from Slack"
    registry_listeners.act(
        inv.deps,
        inv.client,
        action="rollback",
        project_name=name,
        user_id=inv.user_id,
        channel_id=inv.channel_id,
        number=number,
        reason=reason,
    )


def _hand_over(handler: Callable[..., None], inv: Invocation) -> None:
    """Give a subcommand's words to the listener module that owns it (it answers by response URL)."""
    handler(
        inv.deps,
        inv.client,
        inv.args,
        user_id=inv.user_id,
        channel_id=inv.channel_id,
        response_url=inv.body.get("response_url"),
    )


def pilot(inv: Invocation) -> None:
    _hand_over(pilot_listeners.command, inv)


def shadow(inv: Invocation) -> None:
    _hand_over(pilot_listeners.shadow_command, inv)


def compare(inv: Invocation) -> None:
    _hand_over(compare_listeners.command, inv)


def project_settings(inv: Invocation) -> None:
    if not inv.args:
        inv.respond(response_type="ephemeral", text=f"Usage: `{COMMAND} {compare_listeners.SETTINGS_USAGE}`")
        return
    _hand_over(compare_listeners.settings_command, inv)


REVIEWERS_USAGE = "reviewers <project> [weighting on|off]"


def _estimate(model: dawid_skene.Fit | None, reviewer: str) -> str:
    accuracy = model.accuracy(reviewer) if model is not None else None
    return f"; estimated accuracy {accuracy:.0%}" if accuracy is not None else ""


def reviewers(inv: Invocation) -> None:
    """Each reviewer's agreement with the labels the others settled on (pilot reviews included), and
    their estimated accuracy when consensus weighs them; ``weighting on|off`` (owners) turns that on."""
    name = _project_arg(inv, REVIEWERS_USAGE)
    if name is None:
        return
    if len(inv.args) > 1:
        words = [w.lower() for w in inv.args[1:]]
        if words not in (["weighting", "on"], ["weighting", "off"]):
            inv.respond(response_type="ephemeral", text=f"Usage: `{COMMAND} {REVIEWERS_USAGE}`")
            return
        pilot_listeners.weighting_command(
            inv.deps,
            inv.client,
            name,
            enabled=words[1] == "on",
            user_id=inv.user_id,
            channel_id=inv.channel_id,
            response_url=inv.body.get("response_url"),
        )
        return
    try:
        with session_scope(inv.deps.engine) as session:
            project = projects.get_project(session, name)
            states = gates.example_states(session, project)
            rows = reliability.reliability(
                reliability.Voted(s.votes, s.example.final_label, s.example.source) for s in states
            )
            model = gates.reviewer_model(session, project)
    except DatasetError as exc:
        _ephemeral(inv, payloads.notice(str(exc)))
        return
    if not rows:
        _ephemeral(inv, payloads.notice(f"No reviewer of *{name}* has a vote another vote can check yet."))
        return
    lines = [
        f"• <@{r.reviewer}> agrees {r.agreed}/{r.compared} ({r.rate:.0%}, 95% CI "
        f"{r.interval[0]:.0%}–{r.interval[1]:.0%})"
        + (f", {r.pilot} of them pilot reviews" if r.pilot else "")
        + _estimate(model, r.reviewer)
        for r in rows
    ]
    weighting = (
        "Consensus weighs them by their estimated accuracy (Dawid–Skene)."
        if model is not None
        else f"Consensus counts one vote each (`{COMMAND} reviewers {name} weighting on` weighs them)."
    )
    _ephemeral(
        inv,
        payloads.notice(
            f"Reviewers of *{name}*, against the label the other reviewers (or the owner) settled on:\n"
            + "\n".join(lines)
            + "\n"
            + weighting
        ),
    )


def _audit_mark(entry: AuditEntry) -> str:
    if not entry.allowed:
        return " :no_entry: refused"
    if entry.detail.startswith(("not done", "failed")):
        return " :x: not done"
    return " :white_check_mark:"


def audit_log(inv: Invocation) -> None:
    """The project's audit log; the details (reasons, errors) only for those the policy lets read
    them (owners, trainers, on-call, admins), everyone else sees who did what and when."""
    name = _project_arg(inv, "audit <project>")
    if name is None:
        return
    person = inv.deps.person(inv.client, inv.user_id)
    try:
        with session_scope(inv.deps.engine) as session:
            project = projects.get_project(session, name)
            details = decide(inv.deps.settings, project, Action.READ_AUDIT, person).allowed
            rows = [
                f"• {e.at:%Y-%m-%d %H:%M} {payloads.slack_person(e.user_id)} {e.action} "
                + payloads.escape(e.target)
                + _audit_mark(e)
                + (f" — {payloads.escape(redact(e.detail)[:120])}" if e.detail and details else "")
                for e in audit.entries(session, project_id=project.id, limit=30)
            ]
    except DatasetError as exc:
        _ephemeral(inv, payloads.notice(str(exc)))
        return
    _ephemeral(inv, payloads.audit_log(name, rows, details_hidden=not details))


def show_help(inv: Invocation) -> None:
    _ephemeral(inv, help_payload())  # answered in the ack already (`ack_command`); kept for the table


SUBCOMMANDS: dict[str, Subcommand] = {
    s.name: s
    for s in (
        Subcommand("start", "[start] [topic]", "run the fine-tuning readiness interview in a thread", start),
        Subcommand(
            "history", "history", "this channel's readiness interviews and their recommendations", history
        ),
        Subcommand(
            "new", "new", "create a dataset project: examples in a thread, labels by reaction", new_project
        ),
        Subcommand(
            "status", "status <project>", "a project's readiness gates: counts, agreement, conflicts", status
        ),
        Subcommand(
            "conflicts",
            "conflicts <project>",
            "examples reviewers disagree on; owners settle them",
            conflicts,
        ),
        Subcommand(
            "repost",
            "repost <project>",
            "post a project's thread again when Slack refused it (e.g. before I was invited)",
            repost,
        ),
        Subcommand(
            "train",
            "train <project> [key=value …]",
            "snapshot and estimate; Confirm queues the QLoRA training (base_model, epochs, lr, lora_r, "
            "max_len, batch_tokens, procs)",
            train,
        ),
        Subcommand(
            "pause", "pause <run>", "checkpoint a training run and free its worker", _run_verb("pause")
        ),
        Subcommand(
            "resume", "resume <run>", "go on with a paused run from its checkpoint", _run_verb("resume")
        ),
        Subcommand(
            "rollback", "rollback <project> [vN] [reason]", "on-call: production back a version", rollback
        ),
        Subcommand(
            "shadow",
            pilot_listeners.SHADOW_USAGE,
            "owners: a candidate answers the pilot's messages beside production, unseen, then a report",
            shadow,
        ),
        Subcommand(
            "reviewers",
            REVIEWERS_USAGE,
            "each reviewer's agreement with the settled labels; owners: weigh them by reliability",
            reviewers,
        ),
        Subcommand(
            "pilot",
            pilot_listeners.USAGE,
            "owners: production suggests an answer to each new message in a channel; reactions review it",
            pilot,
        ),
        Subcommand(
            "compare",
            compare_listeners.USAGE,
            "owners: a blind A/B of versions on held-out or pilot inputs, judged by reactions; "
            "`compare close <number>` reveals who wrote what",
            compare,
        ),
        Subcommand(
            "settings",
            compare_listeners.SETTINGS_USAGE,
            "owners: a project's rules (require-ab: promote only a version that won a blind A/B)",
            project_settings,
        ),
        Subcommand(
            "audit", "audit <project>", "who trained, promoted, rolled back — allowed or refused", audit_log
        ),
        Subcommand("help", "help", "this list", show_help),
    )
}


def _words(body: dict[str, Any]) -> tuple[str, list[str]]:
    args = str(body.get("text") or "").split()
    return (args[0].lower() if args else "start"), args[1:]


def ack_command(ack: Ack, body: dict[str, Any]) -> bool:
    """Answer Slack at once; the help (and an unknown subcommand, which gets the help) is the ack
    itself, so it needs no Web API call. False when nothing is left to do."""
    name, _ = _words(body)
    if name == "help" or name not in SUBCOMMANDS:
        ack(**help_payload(unknown=None if name == "help" else name))
        return False
    ack()
    return True


def on_command(body: dict[str, Any], client: WebClient, respond: Respond, context: BoltContext) -> None:
    name, args = _words(body)
    SUBCOMMANDS[name].run(
        Invocation(deps=deps_of(context), body=body, args=args, client=client, respond=respond)
    )
