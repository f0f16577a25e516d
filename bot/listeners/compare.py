"""Blind A/B in Slack: `/finetune compare`, reviewers' votes on its items, the reveal, and the
project setting that makes promote require a won comparison.

The command records the comparison and its predictions (`runner.registry.abtests`), posts the
header in the project's channel, and only then puts the predictions on the predict queue: the
predict worker posts each item as a reply to the header once both its answers are in
(`runner.slack.notify.post_comparison_items`). Nothing posted names a version until the comparison
closes — by its owner, or by itself once every item has the votes it needs — when every item is
updated to show which version wrote which answer and the result is posted
(`runner.slack.notify.reveal_comparison`).
"""

from __future__ import annotations

import logging
import re

from slack_sdk import WebClient
from sqlmodel import Session

from bot.deps import Deps
from bot.listeners import answers
from runner.core import audit
from runner.core.db import session_scope
from runner.core.exceptions import DatasetError, FtbotError
from runner.core.models import AbChoice, Comparison, ComparisonItem, ComparisonStatus, Project
from runner.core.policy import Action, perform
from runner.data import projects
from runner.jobs import queues
from runner.registry import abtests
from runner.registry.abtests import Started
from runner.slack import notify, payloads
from runner.slack.client import call

log = logging.getLogger(__name__)

USAGE = "compare <project> vA vB [vC …] [n=20] [votes=2] [from=heldout|pilot]"
CLOSE_USAGE = "compare close <number>"
SETTINGS_USAGE = "settings <project> [require-ab on|off]"
AUTO_CLOSER = "ftbot"  # who the audit log names when a comparison closes by itself
OPTIONS = {"n", "votes", "from"}


def parse(args: list[str]) -> tuple[str, list[int], dict[str, str]]:
    """``(project, version numbers, options)`` from the subcommand's words.

    Raises:
        DatasetError: malformed; the message shows the usage.
    """
    usage = f"Usage: `/finetune {USAGE}` (or `/finetune {CLOSE_USAGE}`)."
    if len(args) < 3:
        raise DatasetError(usage)
    numbers, options = [], {}
    for word in args[1:]:
        if re.fullmatch(r"v\d+", word.lower()):
            numbers.append(int(word[1:]))
        elif "=" in word and word.split("=", 1)[0].lower() in OPTIONS:
            key, value = word.split("=", 1)
            options[key.lower()] = value.lower()
        else:
            raise DatasetError(f"I did not understand `{word[:40]}`. {usage}")
    for key in ("n", "votes"):
        if key in options and not options[key].isdigit():
            raise DatasetError(f"{key}= takes a whole number, not `{options[key][:20]}`.")
    return args[0].lower(), numbers, options


def command(
    deps: Deps, client: WebClient, args: list[str], *, user_id: str, channel_id: str, response_url: str | None
) -> None:
    """``/finetune compare …`` (owners; audited): start a comparison, or close one."""
    if args[:1] and args[0].lower() == "close":
        close_command(
            deps, client, args[1:], user_id=user_id, channel_id=channel_id, response_url=response_url
        )
        return
    try:
        name, numbers, options = parse(args)
        started = perform(
            deps.engine,
            deps.settings,
            Action.COMPARE,
            deps.person(client, user_id),
            load=lambda session: projects.get_project(session, name),
            work=lambda session, project: abtests.start(
                session,
                project,
                numbers,
                by=user_id,
                n=int(options.get("n", abtests.DEFAULT_ITEMS)),
                votes_needed=int(options["votes"]) if "votes" in options else None,
                source=options.get("from"),
            ),
            target="blind A/B",
            detail=lambda s: f"#{s.comparison_id}: " + " ".join(f"v{n}" for n in s.numbers),
        )
    except FtbotError as exc:
        answers.tell(client, channel=channel_id, user=user_id, text=str(exc), response_url=response_url)
        return
    _post_header(deps, client, started, user_id=user_id, channel_id=channel_id, response_url=response_url)


def _post_header(
    deps: Deps,
    client: WebClient,
    started: Started,
    *,
    user_id: str,
    channel_id: str,
    response_url: str | None,
) -> None:
    """Post the header, keep its ts (items reply to it), then ask the predict worker for the answers."""
    header = payloads.comparison_header(
        started.project,
        started.comparison_id,
        versions=started.versions,
        n=started.items,
        source=started.source,
        votes_needed=started.votes_needed,
    )
    posted = call(client, "chat_postMessage", channel=started.channel_id, **header)
    with session_scope(deps.engine) as session:
        comparison = session.get(Comparison, started.comparison_id)
        assert comparison is not None
        comparison.thread_ts = posted["ts"] if posted is not None else None
        session.add(comparison)
    for prediction_id in started.prediction_ids:
        try:
            queues.enqueue_prediction(prediction_id, connection=deps.redis)
        except Exception:  # Redis away: the predictions stay queued in the database
            log.exception("could not enqueue prediction", extra={"prediction_id": prediction_id})
    where = (
        f"<#{started.channel_id}>"
        if posted is not None
        else "the project's channel (without a header: Slack refused it)"
    )
    answers.tell(
        client,
        channel=channel_id,
        user=user_id,
        text=(
            f"Blind A/B #{started.comparison_id} of *{started.project}* started in {where}: "
            f"{started.items} items from {abtests.SOURCE_NAMES[started.source]}, posted as their answers "
            f"come in. Close it with `/finetune compare close {started.comparison_id}`."
        ),
        response_url=response_url,
    )


def _comparison_project(session: Session, comparison_id: int) -> Project:
    comparison = abtests.get(session, comparison_id)
    project = session.get(Project, comparison.project_id)
    assert project is not None
    return project


def close_command(
    deps: Deps, client: WebClient, args: list[str], *, user_id: str, channel_id: str, response_url: str | None
) -> None:
    """``/finetune compare close <number>`` (the project's owners; audited)."""
    if len(args) != 1 or not args[0].removeprefix("#").isdigit():
        answers.tell(
            client,
            channel=channel_id,
            user=user_id,
            text=f"Usage: `/finetune {CLOSE_USAGE}`",
            response_url=response_url,
        )
        return
    comparison_id = int(args[0].removeprefix("#"))
    try:
        perform(
            deps.engine,
            deps.settings,
            Action.COMPARE,
            deps.person(client, user_id),
            load=lambda session: _comparison_project(session, comparison_id),
            work=lambda session, _project: abtests.close(
                session, abtests.get(session, comparison_id), by=user_id
            ),
            target=f"close blind A/B #{comparison_id}",
        )
    except FtbotError as exc:
        answers.tell(client, channel=channel_id, user=user_id, text=str(exc), response_url=response_url)
        if isinstance(exc, DatasetError) and _closed(deps, comparison_id):
            notify.reveal_comparison(
                deps.settings, deps.engine, comparison_id
            )  # shown again, if Slack missed it
        return
    notify.reveal_comparison(deps.settings, deps.engine, comparison_id)


def _closed(deps: Deps, comparison_id: int) -> bool:
    with session_scope(deps.engine) as session:
        comparison = session.get(Comparison, comparison_id)
        return comparison is not None and comparison.status == ComparisonStatus.CLOSED


def vote(
    session: Session, found: tuple[Project, Comparison, ComparisonItem], user: str, emoji: str, added: bool
) -> bool | None:
    """A reaction on an item, by a reviewer (the caller checked): True when the vote changed, False
    for a redelivery, None when the reaction is not a vote (another emoji, a closed comparison)."""
    _project, comparison, item = found
    choice: AbChoice | None = abtests.EMOJI.get(emoji)
    if choice is None or comparison.status != ComparisonStatus.OPEN:
        return None
    return abtests.react(session, item, user, choice, added=added)


def after_vote(deps: Deps, comparison_id: int) -> None:
    """A vote changed: once every item has the votes it needs, the comparison closes by itself (once,
    audited) and the identities are shown."""
    with session_scope(deps.engine) as session:
        comparison = session.get(Comparison, comparison_id)
        if comparison is None or comparison.status != ComparisonStatus.OPEN:
            return
        if not abtests.complete(session, comparison):
            return
        try:
            abtests.close(session, comparison, by=AUTO_CLOSER)
        except DatasetError:  # another vote closed it a moment ago
            return
        audit.record(
            session,
            user_id=AUTO_CLOSER,
            action=Action.COMPARE,
            allowed=True,
            project_id=comparison.project_id,
            target=f"close blind A/B #{comparison_id}",
            detail=f"every item has {comparison.votes_needed} vote(s)",
        )
    notify.reveal_comparison(deps.settings, deps.engine, comparison_id)


def settings_command(
    deps: Deps, client: WebClient, args: list[str], *, user_id: str, channel_id: str, response_url: str | None
) -> None:
    """``/finetune settings <project> [require-ab on|off]``: show the project's rules, or change one
    (owners; audited)."""
    if len(args) == 1:
        try:
            with session_scope(deps.engine) as session:
                project = projects.get_project(session, args[0].lower())
                text = f"*{project.name}*: require-ab {'on' if project.require_ab else 'off'} (promote " + (
                    "refuses a version that has not won a closed blind A/B against production)."
                    if project.require_ab
                    else "needs no blind A/B)."
                )
        except FtbotError as exc:
            text = str(exc)
        answers.tell(client, channel=channel_id, user=user_id, text=text, response_url=response_url)
        return
    if len(args) != 3 or args[1].lower() != "require-ab" or args[2].lower() not in ("on", "off"):
        answers.tell(
            client,
            channel=channel_id,
            user=user_id,
            text=f"Usage: `/finetune {SETTINGS_USAGE}`",
            response_url=response_url,
        )
        return
    name, enabled = args[0].lower(), args[2].lower() == "on"
    try:
        perform(
            deps.engine,
            deps.settings,
            Action.SETTINGS,
            deps.person(client, user_id),
            load=lambda session: projects.get_project(session, name),
            work=lambda session, project: abtests.set_require_ab(session, project, enabled=enabled),
            target=f"require-ab {'on' if enabled else 'off'}",
        )
    except FtbotError as exc:
        answers.tell(client, channel=channel_id, user=user_id, text=str(exc), response_url=response_url)
        return
    text = (
        f"<@{user_id}> set *{name}* to require a won blind A/B against production before promote."
        if enabled
        else f"<@{user_id}> set *{name}* to promote without a blind A/B."
    )
    with session_scope(deps.engine) as session:
        where = projects.get_project(session, name).channel_id or channel_id
    if call(client, "chat_postMessage", channel=where, **payloads.notice(text)) is None:
        answers.tell(client, channel=channel_id, user=user_id, text=text, response_url=response_url)
