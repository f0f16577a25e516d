"""Who may do what: one function decides every permission, and one seam runs every privileged action.

`decide` answers from the project, the action and the person alone: project owners, reviewers,
``FTBOT_TRAINERS``, on-call users and user groups (``FTBOT_ONCALL``), and ``FTBOT_ADMINS``. Slack
listeners and CLI commands never decide for themselves; they build a `Person` and ask.

`perform` is the seam every privileged action goes through: it decides, runs the action and writes
the audit row in the same transaction; a refusal is audited and committed without the action; an
action that fails is rolled back and its failure audited in a transaction of its own. So every
attempt — allowed, refused, failed or crashed — leaves exactly one audit row. (An action carried out
in steps after the decision, a deploy, writes its row when it ends; see `runner.registry.versions`.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from sqlalchemy.engine import Engine
from sqlmodel import Session

from runner.core import audit
from runner.core.config import Settings
from runner.core.db import session_scope
from runner.core.exceptions import FtbotError, NotAllowed, RuleRefused
from runner.core.models import Project

log = logging.getLogger(__name__)
T = TypeVar("T")


class Action(StrEnum):
    """Everything a person can be allowed or refused."""

    VOTE = "vote"  # a reaction counted as a label
    SETTLE = "adjudicate"  # the final label of a conflicted example
    TRAIN = "train"
    CONFIRM = "confirm"  # a training request's estimate: queue the run
    APPROVE = "approve"  # a run over the project's GPU-hour budget (admins only)
    CANCEL = "cancel"
    PAUSE = "pause"
    RESUME = "resume"
    PROMOTE = "promote"
    DISCARD = "discard"
    ROLLBACK = "rollback"
    READ_AUDIT = "read_audit"  # the details of the audit log
    PILOT = "pilot"  # turn a project's pilot on or off
    COMPARE = "compare"  # start or close a blind A/B of versions
    SETTINGS = "settings"  # a project's rules (a won A/B before promote; how consensus weighs reviewers)


class Role(StrEnum):
    ADMIN = "admin"
    OWNER = "owner"
    TRAINER = "trainer"
    ONCALL = "on-call"
    REVIEWER = "reviewer"
    REQUESTER = "who started it"
    OPERATOR = "operator"  # someone at the command line, with the database in hand


# Who may do each action (admins and operators may do everything). The order is the one the
# refusal names them in.
ALLOWED: dict[Action, tuple[Role, ...]] = {
    Action.VOTE: (Role.REVIEWER,),
    Action.SETTLE: (Role.OWNER,),
    Action.TRAIN: (Role.OWNER, Role.TRAINER),
    Action.CONFIRM: (Role.REQUESTER, Role.OWNER),
    Action.APPROVE: (),  # admins (and operators) alone
    Action.CANCEL: (Role.REQUESTER, Role.OWNER, Role.TRAINER),
    Action.PAUSE: (Role.REQUESTER, Role.OWNER, Role.TRAINER),
    Action.RESUME: (Role.REQUESTER, Role.OWNER, Role.TRAINER),
    Action.PROMOTE: (Role.OWNER, Role.TRAINER),
    Action.DISCARD: (Role.OWNER, Role.TRAINER),
    Action.ROLLBACK: (Role.ONCALL,),
    Action.READ_AUDIT: (Role.OWNER, Role.TRAINER, Role.ONCALL),
    Action.PILOT: (Role.OWNER,),
    Action.COMPARE: (Role.OWNER,),
    Action.SETTINGS: (Role.OWNER,),
}
NOT_AUDITED = frozenset({Action.VOTE, Action.READ_AUDIT})
# What a refusal says a person may not do to *project*, where the action's name would not read well.
VERBS: dict[Action, str] = {
    Action.CONFIRM: "confirm this training of",
    Action.APPROVE: "approve over-budget training of",
    Action.SETTINGS: "change the settings of",
    Action.COMPARE: "run blind A/B comparisons of",
}


def is_group(entry: str) -> bool:
    """Slack user group ids start with S; user ids with U or W."""
    return entry.startswith("S")


@dataclass(frozen=True)
class Person:
    """Someone acting: a Slack user (whose user-group membership is looked up on demand) or an
    operator at the command line."""

    user_id: str
    in_group: Callable[[str], bool] = field(default=lambda _group: False, compare=False, repr=False)
    operator: bool = False

    @classmethod
    def cli(cls, name: str) -> Person:
        return cls(user_id=f"cli:{name}"[:64], operator=True)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    action: Action
    role: Role | None  # the role that allowed it
    needs: tuple[Role, ...]  # who may, for the refusal

    def refusal(self, project: Project) -> str:
        """What to tell a person who was refused."""
        verb = VERBS.get(self.action, self.action.value.replace("_", " "))
        if not self.needs:  # admins alone
            return f"Only an admin (FTBOT_ADMINS) may {verb} *{project.name}*; this attempt was logged."
        who = " or ".join("the project owner" if r is Role.OWNER else str(r) for r in self.needs)
        owner = f" (<@{project.owner_id}>)" if Role.OWNER in self.needs and project.owner_id else ""
        return f"Only {who}{owner} may {verb} *{project.name}*; this attempt was logged."


def roles(
    settings: Settings, project: Project | None, person: Person, *, requested_by: str | None = None
) -> set[Role]:
    """Every role `person` holds for `project` (user groups are asked only when a list names one)."""
    held: set[Role] = set()
    uid = person.user_id
    if person.operator:
        held.add(Role.OPERATOR)
    if uid in settings.ftbot_admins:
        held.add(Role.ADMIN)
    if uid in settings.ftbot_trainers:
        held.add(Role.TRAINER)
    if requested_by and uid == requested_by:
        held.add(Role.REQUESTER)
    if _listed(person, settings.ftbot_oncall):
        held.add(Role.ONCALL)
    if project is not None:
        if project.owner_id and uid == project.owner_id:
            held.add(Role.OWNER)
        if _listed(person, [*project.reviewers, *project.reviewer_groups]):
            held.add(Role.REVIEWER)
    return held


def _listed(person: Person, entries: list[str] | tuple[str, ...]) -> bool:
    if person.user_id in entries:
        return True
    return any(person.in_group(group) for group in entries if is_group(group))


def decide(
    settings: Settings,
    project: Project | None,
    action: Action,
    person: Person,
    *,
    requested_by: str | None = None,
) -> Decision:
    """May `person` do `action` on `project`? (Admins and command-line operators may do anything.)"""
    needs = ALLOWED[action]
    held = roles(settings, project, person, requested_by=requested_by)
    for role in (Role.OPERATOR, Role.ADMIN, *needs):
        if role in held:
            return Decision(True, action, role, needs)
    return Decision(False, action, None, needs)


def perform(
    engine: Engine,
    settings: Settings,
    action: Action,
    person: Person,
    *,
    load: Callable[[Session], Project],
    work: Callable[[Session, Project], T],
    target: str = "",
    detail: Callable[[T], str] | None = None,
    requested_by: Callable[[Session], str | None] | None = None,
    audit_done: bool = True,
) -> T:
    """Run one privileged action as one unit of work, decided and audited (see the module docstring).

    Args:
        load: finds the project in the session (raises the caller's not-found error).
        work: does the action; it may raise an `FtbotError` saying why it cannot be done.
        target: what the action is on, for the audit log (``v3``, ``run 7``, ``example 12 → billing``).
        detail: the audit detail of a done action, from its result.
        requested_by: who started the thing acted on (for cancelling a run).
        audit_done: False when `work` only begins the action (a deploy: recorded now, carried out
            after this commit): its outcome is then audited by whoever completes it — the caller,
            or the reconciler for an attempt left half-way. Refusals and failures of `work` are
            audited here either way.

    Returns:
        What `work` returned.

    Raises:
        NotAllowed: `person` may not; the refusal is audited.
        RuleRefused: a project rule refuses it; audited as refused, nothing changed.
        FtbotError: `work` refused; its failure is audited and nothing else changed.
    """
    project_id: int | None = None
    try:
        with session_scope(engine) as session:
            project = load(session)
            project_id = project.id
            decision = decide(
                settings,
                project,
                action,
                person,
                requested_by=requested_by(session) if requested_by else None,
            )
            if not decision.allowed:
                audit.record(
                    session,
                    user_id=person.user_id,
                    action=action,
                    allowed=False,
                    project_id=project.id,
                    target=target,
                    detail="refused: needs " + " or ".join(decision.needs),
                )
                refused = NotAllowed(decision.refusal(project))
            else:
                result = work(session, project)
                if audit_done:
                    audit.record(
                        session,
                        user_id=person.user_id,
                        action=action,
                        allowed=True,
                        project_id=project.id,
                        target=target,
                        detail=detail(result) if detail else "",
                    )
                return result
    except RuleRefused as exc:
        if project_id is not None:
            _record_failure(engine, person, action, project_id, target, f"refused: {exc}", allowed=False)
        raise
    except FtbotError as exc:
        if project_id is not None:
            _record_failure(engine, person, action, project_id, target, f"not done: {exc}")
        raise
    except Exception as exc:
        if project_id is not None:
            _record_failure(engine, person, action, project_id, target, f"failed: {type(exc).__name__}")
        raise
    raise refused


def _record_failure(
    engine: Engine,
    person: Person,
    action: Action,
    project_id: int,
    target: str,
    detail: str,
    *,
    allowed: bool = True,
) -> None:
    try:
        with session_scope(engine) as session:
            audit.record(
                session,
                user_id=person.user_id,
                action=action,
                allowed=allowed,
                project_id=project_id,
                target=target,
                detail=detail,
            )
    except Exception:  # the database is away: the log line is all that is left
        log.exception("could not audit a failed action", extra={"action": str(action), "detail": detail})
