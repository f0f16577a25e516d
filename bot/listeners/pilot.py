"""Pilot mode in Slack: `/finetune pilot`, new messages in a pilot channel, reviews of suggestions.

New top-level messages in a pilot channel are recorded as predictions of the version in production
and put on the predict queue; the predict worker posts each suggestion in the message's thread
(`runner.jobs.predict`). Reactions on a suggestion are reviews (`runner.registry.pilot`); after each
one the acceptance of the version in production is tested, and a drop posts an alert for on-call
with a Rollback button (the registry's audited compare-and-set path, `bot.listeners.registry`).
A reviewer's reply in the thread of a pilot message may be their correction of its suggestion (with
their ❌ on it). ``/finetune reviewers <project> weighting on|off`` is here too: it is the pilot's
reviews, with the dataset's, that teach the model how far each reviewer can be trusted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from sqlmodel import Session

from bot.deps import Deps
from bot.directory import DirectoryMiss
from bot.listeners import answers
from runner.core.db import session_scope
from runner.core.exceptions import FtbotError
from runner.core.models import Project
from runner.core.policy import Action, decide, perform
from runner.data import projects
from runner.jobs import queues
from runner.registry import pilot, versions
from runner.slack import notify, payloads
from runner.slack.client import call

log = logging.getLogger(__name__)

CHANNEL = re.compile(r"^<#([CG][A-Z0-9]+)(?:\|[^>]*)?>$|^([CG][A-Z0-9]{6,})$")
USAGE = "pilot <project> on|off [#channel]"


def parse(args: list[str]) -> tuple[str, bool, str | None] | None:
    """``(project, on, channel id or None)`` from the subcommand's words, or None when malformed."""
    if len(args) not in (2, 3) or args[1].lower() not in ("on", "off"):
        return None
    channel = None
    if len(args) == 3:
        found = CHANNEL.match(args[2])
        if found is None:
            return None
        channel = found.group(1) or found.group(2)
    return args[0].lower(), args[1].lower() == "on", channel


def command(
    deps: Deps, client: WebClient, args: list[str], *, user_id: str, channel_id: str, response_url: str | None
) -> None:
    """``/finetune pilot <project> on|off [#channel]`` (owners; audited)."""
    parsed = parse(args)
    if parsed is None:
        answers.tell(
            client,
            channel=channel_id,
            user=user_id,
            text=f"Usage: `/finetune {USAGE}` (the channel defaults to this one).",
            response_url=response_url,
        )
        return
    name, enabled, channel = parsed

    def switch(session: Session, project: Project) -> tuple[str, int | None]:
        where = channel or (channel_id if enabled else None)  # off: wherever it was
        chosen = pilot.set_pilot(session, project, enabled=enabled, channel_id=where, by=user_id)
        serving = versions.production(session, project)
        return chosen.channel_id, serving.number if serving else None

    try:
        where, serving = perform(
            deps.engine,
            deps.settings,
            Action.PILOT,
            deps.person(client, user_id),
            load=lambda session: projects.get_project(session, name),
            work=switch,
            target="on in " + (channel or channel_id) if enabled else "off",
        )
    except FtbotError as exc:
        answers.tell(client, channel=channel_id, user=user_id, text=str(exc), response_url=response_url)
        return
    if enabled:
        text = (
            f"<@{user_id}> turned on the pilot of *{name}* here: new messages get v{serving}'s suggestion in "
            "their thread. Reviewers: react :white_check_mark: to accept it, or correct it with the right "
            "label's emoji (or :x: and a reply in the thread); every review becomes a labeled example."
        )
    else:
        text = f"<@{user_id}> turned off the pilot of *{name}* here: new messages get no suggestion."
    if call(client, "chat_postMessage", channel=where, **payloads.notice(text)) is None:
        answers.tell(client, channel=channel_id, user=user_id, text=text, response_url=response_url)


def on_top_level_message(deps: Deps, event: dict[str, Any], plain: Callable[[str], str]) -> None:
    """A new top-level message: asked of production in every project piloting in its channel
    (`plain` turns its Slack markup into the plain text a model reads)."""
    with session_scope(deps.engine) as session:
        if not pilot.pilots_in(session, event["channel"]):
            return
    text = plain(str(event.get("text") or "")).strip()
    if not text:
        return
    with session_scope(deps.engine) as session:
        asked = pilot.ask_for_message(
            session, event["channel"], event["ts"], str(event.get("user", "")), text
        )
    for prediction_id in asked:
        try:
            queues.enqueue_prediction(prediction_id, connection=deps.redis)
        except Exception:  # Redis away: the prediction stays queued in the database
            log.exception("could not enqueue prediction", extra={"prediction_id": prediction_id})


def on_thread_reply(
    deps: Deps, client: WebClient, event: dict[str, Any], plain: Callable[[str], str]
) -> bool:
    """A reply (or an edited one) in the thread of a pilot message: a reviewer's correction of the
    suggestion, counted while their ❌ is on it (`runner.registry.pilot.reply`). False when the thread
    is not a pilot message's (the reply is then none of the pilot's business)."""
    channel, thread_ts, user = event["channel"], str(event["thread_ts"]), str(event.get("user", ""))
    with session_scope(deps.engine) as session:
        if not pilot.suggestions_in_thread(session, channel, thread_ts):
            return False
    text = plain(str(event.get("text") or ""))
    outcomes: list[tuple[int, pilot.Corrected]] = []
    for _attempt in range(3):  # a reviewer group to look up: done outside the unit of work, then again
        try:
            outcomes = _record_reply(deps, channel, thread_ts, user, str(event["ts"]), text)
        except DirectoryMiss as miss:
            deps.directory.group_members(client, miss.group_id)
            continue
        break
    for project_id, corrected in outcomes:
        if corrected.tell:
            answers.tell(client, channel=channel, user=user, text=corrected.tell, thread_ts=thread_ts)
        if corrected.changed:
            deps.tally.touch(project_id)
            after_review(deps, project_id)
    return True


def _record_reply(
    deps: Deps, channel: str, thread_ts: str, user: str, ts: str, text: str
) -> list[tuple[int, pilot.Corrected]]:
    """One unit of work: the reply, for each suggestion in the thread whose project `user` reviews."""
    outcomes = []
    with session_scope(deps.engine) as session:
        for project, prediction in pilot.suggestions_in_thread(session, channel, thread_ts):
            if not decide(deps.settings, project, Action.VOTE, deps.person_cached(user)).allowed:
                continue
            outcomes.append((project.id or 0, pilot.reply(session, project, prediction, user, ts, text)))
    return outcomes


def after_review(deps: Deps, project_id: int) -> None:
    """A review changed: test the acceptance of the version in production (an alert if it dropped; its
    chart is drawn by the predict worker, `runner.jobs.alerts`, since the bot has no plotting)."""
    alert_id = notify.drift_check(deps.settings, deps.engine, project_id)
    if alert_id is not None:
        try:
            queues.enqueue_alert_chart(alert_id, connection=deps.redis)
        except Exception:  # Redis away: the alert stands, without its chart
            log.exception("could not enqueue the alert's chart", extra={"alert_id": alert_id})
    notify.shadow_check(deps.settings, deps.engine, project_id)


SHADOW_USAGE = "shadow <project> vN [show-reviewers]|off"
SHOW_REVIEWERS = ("show-reviewers", "--show-reviewers")


def shadow_command(
    deps: Deps, client: WebClient, args: list[str], *, user_id: str, channel_id: str, response_url: str | None
) -> None:
    """``/finetune shadow <project> vN [show-reviewers]|off`` (owners; audited): a candidate answers
    the pilot's messages beside production, stored and shown to no one (or, with ``show-reviewers``,
    to the project's reviewers only); its report comes once enough are labeled."""
    words = [w.lower() for w in args]
    shown = len(words) == 3 and words[2] in SHOW_REVIEWERS and re.fullmatch(r"v\d+", words[1]) is not None
    if not shown and (len(args) != 2 or not re.fullmatch(r"v\d+|off", words[1])):
        answers.tell(
            client,
            channel=channel_id,
            user=user_id,
            text=f"Usage: `/finetune {SHADOW_USAGE}`",
            response_url=response_url,
        )
        return
    name, word = args[0].lower(), args[1].lower()
    number = None if word == "off" else int(word[1:])

    def switch(session: Session, project: Project) -> str:
        pilot.set_shadow(session, project, number, by=user_id, shown=shown)
        piloted = pilot.pilot_of(session, project)
        return piloted.channel_id if piloted else channel_id

    try:
        where = perform(
            deps.engine,
            deps.settings,
            Action.PILOT,
            deps.person(client, user_id),
            load=lambda session: projects.get_project(session, name),
            work=switch,
            target=f"shadow {word}" + (" shown to reviewers" if shown else ""),
        )
    except FtbotError as exc:
        answers.tell(client, channel=channel_id, user=user_id, text=str(exc), response_url=response_url)
        return
    seen = (
        "its answers are shown to the project's reviewers only, in each message's thread"
        if shown
        else "unseen"
    )
    text = (
        f"<@{user_id}> put v{number} of *{name}* in shadow here: it answers every new message beside "
        f"production, {seen}; its report comes once {deps.settings.ftbot_shadow_min_reviews} are labeled."
        if number is not None
        else f"<@{user_id}> ended the shadow of *{name}*."
    )
    if call(client, "chat_postMessage", channel=where, **payloads.notice(text)) is None:
        answers.tell(client, channel=channel_id, user=user_id, text=text, response_url=response_url)


def after_move(deps: Deps, project_name: str, resolution: str) -> None:
    """Production moved: resolve the alerts on versions no longer in production."""
    notify.resolve_alerts(deps.settings, deps.engine, project_name, resolution)


def weighting_command(
    deps: Deps,
    client: WebClient,
    name: str,
    *,
    enabled: bool,
    user_id: str,
    channel_id: str,
    response_url: str | None,
) -> None:
    """``/finetune reviewers <project> weighting on|off`` (owners; audited): consensus weighs reviewers
    by their estimated reliability (Dawid–Skene) or counts one vote each. Settled labels may change:
    the project's tally is refreshed."""

    def switch(session: Session, project: Project) -> tuple[int, str]:
        project.weighted_consensus = enabled
        session.add(project)
        return project.id or 0, project.channel_id

    try:
        project_id, where = perform(
            deps.engine,
            deps.settings,
            Action.SETTINGS,
            deps.person(client, user_id),
            load=lambda session: projects.get_project(session, name),
            work=switch,
            target="reviewer weighting " + ("on" if enabled else "off"),
        )
    except FtbotError as exc:
        answers.tell(client, channel=channel_id, user=user_id, text=str(exc), response_url=response_url)
        return
    deps.tally.touch(project_id)
    text = (
        f"<@{user_id}> turned on reviewer weighting for *{name}*: consensus now weighs each reviewer by "
        "their estimated accuracy (Dawid–Skene), so a label may settle differently than by counting votes. "
        f"`/finetune reviewers {name}` shows the estimates."
        if enabled
        else f"<@{user_id}> turned off reviewer weighting for *{name}*: consensus counts one vote each again."
    )
    if call(client, "chat_postMessage", channel=where, **payloads.notice(text)) is None:
        answers.tell(client, channel=channel_id, user=user_id, text=text, response_url=response_url)
