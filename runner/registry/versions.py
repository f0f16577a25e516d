"""The model registry: versions, the production alias, promote / rollback / discard, deployments.

`production` is an alias per project. A move of it (promote or rollback) is a recorded transaction
with the serving system, in steps that each leave the database saying how far it got:

1. **plan** (one unit of work, with the permission check): the move is recorded as a ``pending``
   `Deployment` and claimed on the alias (`ProductionAlias.pending_id`, a compare-and-set on its
   revision), so two on-call engineers pressing Rollback at once (or one pressing twice) move it
   once, and a button acts only if the move it was drawn from is still the latest;
2. **hook**: the deploy hook is told the new manifest (staged beside the real one);
3. **commit**: the alias moves, the move becomes ``committed`` and its audit row is written, together;
4. the manifest is renamed into place, then the move is ``done`` and the alias released.

A failing hook ends the move ``failed`` (the alias never moved). A move abandoned half-way (the
process died, the database went away) is settled by `reconcile_moves`, run by every bot and worker
at start and periodically: a committed move is finished, a pending one reverted — the hook is told
again what the database says — so that the manifest, the database and what the hook was last told
agree. Every attempt leaves one audit row, whoever settles it.

Rollback follows lineage: production goes back to the version that served before the current one
was first promoted, skipping every version production was ever rolled back from and any version
marked bad. A version rolled back from is marked ``rolled_back``; it serves again only when promoted
explicitly, by name, with a confirmation that says so.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from runner.core import audit
from runner.core.config import Settings
from runner.core.db import insert_ignore, session_scope
from runner.core.exceptions import (
    DeployHookError,
    RegistryError,
    RolledBackVersion,
    RuleRefused,
    StaleRegistryAction,
)
from runner.core.models import (
    OPEN_DEPLOY_STATES,
    DeployAction,
    Deployment,
    DeployState,
    ModelVersion,
    ProductionAlias,
    Project,
    VersionStatus,
    utcnow,
)
from runner.core.policy import Action, Person, perform
from runner.data import projects
from runner.registry import deploy

log = logging.getLogger(__name__)

# Moves that changed what serves (a failed or reverted attempt never did).
EFFECTIVE = (DeployState.COMMITTED, DeployState.DONE)
BAD = (VersionStatus.DISCARDED, VersionStatus.ROLLED_BACK)
RECONCILER = "reconciler"  # who the audit log names for what the reconciler does on its own


@dataclass(frozen=True)
class Seen:
    """What a button showed when it was drawn: the version in production and the alias revision
    (the move) it was drawn from. It acts only if that is still the latest move; a button drawn
    before revisions were shown (``revision`` None) checks the version alone."""

    version: int | None
    revision: int | None = None


@dataclass(frozen=True)
class Move:
    """The outcome of a promote or rollback: what serves now and what served before."""

    project: str
    action: str
    version: int
    previous: int | None
    by: str
    reason: str
    manifest: Path
    revision: int = 0


@dataclass(frozen=True)
class Planned:
    """A move recorded as pending, claimed on the alias, not yet carried out."""

    move_id: int
    project: str
    project_id: int
    action: DeployAction
    version: int
    version_id: int
    previous: int | None
    by: str
    reason: str
    revision: int
    owner: str
    document: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Reconciled:
    """What the reconciler did about one project, for the channel (and the log)."""

    project: str
    channel_id: str
    outcome: str  # "finished" | "reverted" | "redeployed" | "stuck"
    action: str
    version: int | None  # the version the move was to (the manifest's, for "redeployed")
    production: int | None  # what serves now
    by: str
    detail: str


def process_owner() -> str:
    """This process, as named on the moves it carries out: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"[:128]


def get_version(session: Session, project: Project, number: int) -> ModelVersion:
    """Version `number` of `project`.

    Raises:
        RegistryError: no such version (the message lists the existing ones).
    """
    version = session.exec(
        select(ModelVersion).where(ModelVersion.project_id == project.id, ModelVersion.number == number)
    ).first()
    if version is None:
        numbers = ", ".join(f"v{v.number}" for v in versions(session, project)) or "none yet"
        raise RegistryError(f"{project.name} has no v{number} (versions: {numbers}).")
    return version


def versions(session: Session, project: Project) -> list[ModelVersion]:
    return list(
        session.exec(
            select(ModelVersion)
            .where(ModelVersion.project_id == project.id)
            .order_by(col(ModelVersion.number))
        ).all()
    )


def alias(session: Session, project: Project) -> ProductionAlias:
    """The project's production alias (empty, and not stored, before the first promote)."""
    assert project.id is not None
    return session.get(ProductionAlias, project.id) or ProductionAlias(project_id=project.id)


def production(session: Session, project: Project) -> ModelVersion | None:
    """The version in production, if any."""
    current = alias(session, project)
    return session.get(ModelVersion, current.version_id) if current.version_id else None


def status_of(session: Session, version: ModelVersion) -> str:
    """What a person is told about a version: ``production`` while the alias points at it,
    ``retired`` once it has served and no longer does, else its stored status."""
    project_alias = session.get(ProductionAlias, version.project_id)
    if project_alias is not None and project_alias.version_id == version.id:
        return "production"
    if version.status == VersionStatus.CANDIDATE:
        served = session.exec(
            select(Deployment.id).where(
                Deployment.version_id == version.id, col(Deployment.state).in_(EFFECTIVE)
            )
        ).first()
        if served is not None:
            return "retired"
    return str(version.status)


def history(
    session: Session, project: Project, limit: int = 20, *, attempts: bool = False
) -> list[Deployment]:
    """The project's moves, newest first (with `attempts`, also those that failed or were reverted)."""
    query = select(Deployment).where(Deployment.project_id == project.id)
    if not attempts:
        query = query.where(col(Deployment.state).in_(EFFECTIVE))
    return list(session.exec(query.order_by(col(Deployment.id).desc()).limit(limit)).all())


def _lineage(session: Session, project: Project) -> list[Deployment]:
    return list(
        session.exec(
            select(Deployment)
            .where(Deployment.project_id == project.id, col(Deployment.state).in_(EFFECTIVE))
            .order_by(col(Deployment.revision), col(Deployment.id))
        ).all()
    )


def previous_production(session: Session, project: Project) -> ModelVersion | None:
    """The rollback target: what served before the current version was *first* promoted, skipping
    every version production was ever rolled back from and every version marked bad (discarded or
    rolled back), walking further back through the same rule."""
    current = alias(session, project).version_id
    moves = _lineage(session, project)
    arrived_after: dict[int, int | None] = {}  # version id -> what served before its first arrival
    for move in moves:
        arrived_after.setdefault(move.version_id, move.previous_version_id)
    rolled_back_from = {m.previous_version_id for m in moves if m.action == DeployAction.ROLLBACK}
    seen: set[int] = set()
    step = current
    while step is not None and step not in seen:
        seen.add(step)
        before = arrived_after.get(step)
        if before is None:
            return None
        candidate = session.get(ModelVersion, before)
        if (
            candidate is not None
            and before != current
            and before not in rolled_back_from
            and candidate.status not in BAD
        ):
            return candidate
        step = before
    return None


def rolled_back_note(session: Session, version: ModelVersion) -> str:
    """``v3 was rolled back by <@U1> on 2026-12-01 10:00: latency doubled`` (or a plainer sentence)."""
    move = session.exec(
        select(Deployment)
        .where(
            Deployment.previous_version_id == version.id,
            Deployment.action == DeployAction.ROLLBACK,
            col(Deployment.state).in_(EFFECTIVE),
        )
        .order_by(col(Deployment.id).desc())
    ).first()
    if move is None:
        return f"v{version.number} was rolled back from production"
    by = f"<@{move.by}>" if move.by[:1] in ("U", "W") else move.by
    return f"v{version.number} was rolled back by {by} on {move.at:%Y-%m-%d %H:%M}" + (
        f": {move.reason}" if move.reason else ""
    )


def discard(session: Session, project: Project, number: int, *, by: str) -> ModelVersion:
    """Mark a candidate (or a version rolled back from) discarded: it can no longer serve.

    Raises:
        RegistryError: the version serves in production, or was discarded already.
    """
    version = get_version(session, project, number)
    if version.status == VersionStatus.DISCARDED:
        raise RegistryError(f"v{number} is already discarded.")
    if production(session, project) is version:
        raise RegistryError(f"v{number} serves in production; roll it back before discarding it.")
    version.status = VersionStatus.DISCARDED
    session.add(version)
    return version


# --- step 1: plan ------------------------------------------------------------------------------


def plan(
    session: Session,
    settings: Settings,
    project: Project,
    action: str,
    *,
    by: str,
    number: int | None = None,
    reason: str = "",
    expected: Seen | None = None,
    again: bool = False,
) -> Planned:
    """Record a promote (of `number`) or rollback (to `number`, or along the lineage) as a pending
    move and claim the alias for it, in the caller's unit of work. Who may is the caller's to check.

    Args:
        expected: what the caller saw (a button carries it); None skips the check.
        again: promote a version that was rolled back from (the person confirmed it).

    Raises:
        RegistryError: unknown or bad version, nothing to roll back to, or another move under way.
        RolledBackVersion: the version was rolled back from and `again` is not set.
        StaleRegistryAction: production moved since the caller looked (e.g. already rolled back).
    """
    assert project.id is not None
    insert_ignore(session, ProductionAlias(project_id=project.id), conflict=("project_id",))
    current_alias = alias(session, project)
    session.refresh(current_alias)
    current = session.get(ModelVersion, current_alias.version_id) if current_alias.version_id else None
    current_number = current.number if current else None
    _check_seen(session, project, current_alias, current_number, expected)
    if current_alias.pending_id is not None:
        under_way = session.get(Deployment, current_alias.pending_id)
        what = f"a {under_way.action} to v{_number(session, under_way.version_id)}" if under_way else "a move"
        raise RegistryError(
            f"{what.capitalize()} of {project.name} is being deployed right now; nothing changed. "
            "Look at the channel in a minute and try again if it is still needed."
        )
    deploy_action = DeployAction(action)
    target = _target(session, project, deploy_action, current, number, again=again)
    if current is not None and current.id == target.id:
        raise StaleRegistryAction(f"v{target.number} is already in production; nothing changed.")
    if deploy_action == DeployAction.PROMOTE and current is not None:
        _check_ab(session, project, target, current)
    owner = process_owner()
    revision = current_alias.revision + 1
    move = Deployment(
        project_id=project.id,
        action=deploy_action,
        version_id=target.id or 0,
        previous_version_id=current.id if current else None,
        by=by,
        reason=reason,
        revision=revision,
        state=DeployState.PENDING,
        owner=owner,
        owner_since=utcnow(),
    )
    session.add(move)
    session.flush()
    assert move.id is not None
    # The compare-and-set: it takes the row lock, so a concurrent mover waits here and then finds
    # the revision changed or the alias claimed.
    claimed = session.execute(
        update(ProductionAlias)
        .where(
            col(ProductionAlias.project_id) == project.id,
            col(ProductionAlias.revision) == current_alias.revision,
            col(ProductionAlias.pending_id).is_(None),
        )
        .values(pending_id=move.id)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleRegistryAction("Production was changed by someone else a moment ago; nothing changed.")
    return Planned(
        move_id=move.id,
        project=project.name,
        project_id=project.id,
        action=deploy_action,
        version=target.number,
        version_id=target.id or 0,
        previous=current_number,
        by=by,
        reason=reason,
        revision=revision,
        owner=owner,
        document=_document(project, target, revision, str(deploy_action), by),
    )


def _number(session: Session, version_id: int | None) -> int | None:
    version = session.get(ModelVersion, version_id) if version_id else None
    return version.number if version else None


def _check_seen(
    session: Session,
    project: Project,
    current_alias: ProductionAlias,
    current_number: int | None,
    expected: Seen | None,
) -> None:
    if expected is None:
        return
    now = f"v{current_number}" if current_number else "nothing"
    seen = f"v{expected.version}" if expected.version else "no version"
    if expected.revision is not None and expected.revision != current_alias.revision:
        latest = history(session, project, limit=1)
        since = (
            f" ({latest[0].action} to {now} by {_who(latest[0].by)} at {latest[0].at:%H:%M})"
            if latest
            else ""
        )
        raise StaleRegistryAction(
            f"This button is out of date: it was drawn when {seen} was in production, and production "
            f"has moved since{since}; nothing changed. {now} is in production."
        )
    if expected.version != current_number:
        raise StaleRegistryAction(f"{seen} is no longer in production ({now} is); nothing changed.")


def _check_ab(session: Session, project: Project, target: ModelVersion, current: ModelVersion) -> None:
    """The project's rule: promote only a version that won a closed blind A/B against production.

    Raises:
        RuleRefused: the project requires it and `target` has not won one.
    """
    from runner.registry import abtests  # built on this module

    if project.require_ab and not abtests.won_against(session, target, current):
        raise RuleRefused(
            f"*{project.name}* requires a won blind A/B before promote, and v{target.number} has not won "
            f"a closed one against v{current.number} (in production): "
            f"`/finetune compare {project.name} v{target.number} v{current.number}`."
        )


def _who(user: str) -> str:
    return f"<@{user}>" if user[:1] in ("U", "W") else user


def _target(
    session: Session,
    project: Project,
    action: DeployAction,
    current: ModelVersion | None,
    number: int | None,
    *,
    again: bool,
) -> ModelVersion:
    if action == DeployAction.PROMOTE:
        if number is None:
            raise RegistryError("Say which version to promote.")
        target = get_version(session, project, number)
        if target.status == VersionStatus.DISCARDED:
            raise RegistryError(f"v{number} was discarded and cannot be promoted.")
        if target.status == VersionStatus.ROLLED_BACK and not again:
            note = rolled_back_note(session, target)
            raise RolledBackVersion(
                f"{note}. Promote it again only if that is what you mean: confirm to promote "
                f"v{number} again.",
                project=project.name,
                version=number,
                note=note,
            )
        return target
    if current is None:
        raise RegistryError(f"{project.name} has no version in production to roll back.")
    if number is None:
        target_or_none = previous_production(session, project)
        if target_or_none is None:
            raise RegistryError(
                f"Nothing to roll back to: no version served before v{current.number} of {project.name} "
                "that was not rolled back from or discarded. Promote a version by name instead."
            )
        return target_or_none
    target = get_version(session, project, number)
    if target.status == VersionStatus.DISCARDED:
        raise RegistryError(f"v{target.number} was discarded and cannot serve.")
    if target.status == VersionStatus.ROLLED_BACK:
        note = rolled_back_note(session, target)
        raise RolledBackVersion(
            f"{note}, so a rollback will not go back to it. To serve it anyway, promote v{number} "
            "again by name and confirm.",
            project=project.name,
            version=number,
            note=note,
        )
    return target


def _document(
    project: Project, target: ModelVersion | None, revision: int, action: str, by: str
) -> dict[str, Any]:
    """The manifest: which adapter serves `project` (None when nothing does)."""
    return {
        "project": project.name,
        "version": target.number if target else None,
        "adapter_path": target.artifact_path if target else None,
        "base_model": target.base_model if target else None,
        "snapshot": target.snapshot_id if target else None,
        "revision": revision,
        "action": action,
        "by": by,
        "at": utcnow().isoformat(),
    }


# --- steps 2-4: hook, commit, manifest ----------------------------------------------------------


def carry_out(engine: Engine, settings: Settings, planned: Planned, *, user_id: str) -> Move:
    """Tell the deploy hook, commit the alias with the audit row, then write the manifest.

    Raises:
        DeployHookError: the hook failed; the move is failed and audited, production unchanged.
        StaleRegistryAction: the move took so long that the reconciler reverted it meanwhile.
        RegistryError: the database failed after the hook agreed; the hook was told to keep what
            the database says (or will be, by the reconciler).
    """
    staged = deploy.staged_path(settings, planned.project, planned.move_id)
    manifest = deploy.manifest_path(settings, planned.project)
    try:
        deploy.stage(staged, planned.document)
        deploy.call_hook(settings, staged, planned.document)
    except DeployHookError as exc:
        _fail(engine, planned, user_id, staged, f"not done: {exc}")
        raise
    except Exception as exc:
        log.exception("deploy failed before the move was committed", extra={"move_id": planned.move_id})
        _fail(engine, planned, user_id, staged, f"failed: {type(exc).__name__}")
        raise DeployHookError(
            f"The deploy failed ({type(exc).__name__}); production stays "
            f"{_v(planned.previous)}. The details are in the server log."
        ) from exc
    try:
        _commit(engine, planned, user_id)
    except StaleRegistryAction:
        raise
    except Exception as exc:
        log.exception("could not commit a move the deploy hook accepted", extra={"move_id": planned.move_id})
        try:
            outcome = settle_move(engine, settings, planned.move_id, now=True)
        except Exception:
            log.exception(
                "could not settle the move at once; the reconciler will", extra={"move_id": planned.move_id}
            )
            outcome = None
        if outcome is not None and outcome.outcome == "finished":  # the commit had gone through after all
            return _moved(planned, manifest)
        told = (
            "the deploy hook was told again to keep it"
            if outcome is not None and outcome.outcome == "reverted"
            else "the reconciler will tell the deploy hook so shortly"
        )
        raise RegistryError(
            f"The database failed while recording the move, so production stays {_v(planned.previous)}; "
            f"{told}. Try again in a minute."
        ) from exc
    try:
        os.replace(staged, manifest)
        _finish(engine, planned.move_id)
    except Exception:  # committed: only the last step is left, and the reconciler takes it
        log.exception(
            "could not finish a committed move; the reconciler will", extra={"move_id": planned.move_id}
        )
    return _moved(planned, manifest)


def _moved(planned: Planned, manifest: Path) -> Move:
    return Move(
        planned.project,
        str(planned.action),
        planned.version,
        planned.previous,
        planned.by,
        planned.reason,
        manifest,
        planned.revision,
    )


def _v(number: int | None) -> str:
    return f"v{number}" if number else "nothing"


def _detail(planned: Planned) -> str:
    return f"v{planned.previous or '-'} → v{planned.version}" + (
        f": {planned.reason}" if planned.reason else ""
    )


def _commit(engine: Engine, planned: Planned, user_id: str) -> None:
    with session_scope(engine) as session:
        claimed = session.execute(
            update(Deployment)
            .where(
                col(Deployment.id) == planned.move_id,
                col(Deployment.state) == DeployState.PENDING,
                col(Deployment.owner) == planned.owner,
            )
            .values(state=DeployState.COMMITTED)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            raise StaleRegistryAction(
                f"The {planned.action} to v{planned.version} took too long and was undone by the "
                f"reconciler; production stays {_v(planned.previous)}. Try again."
            )
        moved = session.execute(
            update(ProductionAlias)
            .where(
                col(ProductionAlias.project_id) == planned.project_id,
                col(ProductionAlias.pending_id) == planned.move_id,
                col(ProductionAlias.revision) == planned.revision - 1,
            )
            .values(version_id=planned.version_id, revision=planned.revision, updated_at=utcnow())
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            raise RuntimeError(f"the alias of {planned.project} changed under move {planned.move_id}")
        if planned.action == DeployAction.ROLLBACK and planned.previous is not None:
            _mark_rolled_back(session, planned.project_id, planned.previous)
        audit.record(
            session,
            user_id=user_id,
            action=str(planned.action),
            allowed=True,
            project_id=planned.project_id,
            target=f"v{planned.version}",
            detail=_detail(planned),
        )


def _mark_rolled_back(session: Session, project_id: int, number: int) -> None:
    session.execute(
        update(ModelVersion)
        .where(
            col(ModelVersion.project_id) == project_id,
            col(ModelVersion.number) == number,
            col(ModelVersion.status) == VersionStatus.CANDIDATE,
        )
        .values(status=VersionStatus.ROLLED_BACK)
    )


def _finish(engine: Engine, move_id: int) -> None:
    with session_scope(engine) as session:
        session.execute(
            update(Deployment)
            .where(col(Deployment.id) == move_id, col(Deployment.state) == DeployState.COMMITTED)
            .values(state=DeployState.DONE, finished_at=utcnow())
        )
        session.execute(
            update(ProductionAlias).where(col(ProductionAlias.pending_id) == move_id).values(pending_id=None)
        )


def _fail(engine: Engine, planned: Planned, user_id: str, staged: Path, detail: str) -> None:
    """The hook failed: the move ends failed, the alias is released, the attempt audited."""
    staged.unlink(missing_ok=True)
    try:
        with session_scope(engine) as session:
            ended = session.execute(
                update(Deployment)
                .where(
                    col(Deployment.id) == planned.move_id,
                    col(Deployment.state) == DeployState.PENDING,
                    col(Deployment.owner) == planned.owner,
                )
                .values(state=DeployState.FAILED, detail=detail, finished_at=utcnow())
            )
            if not ended.rowcount:  # type: ignore[attr-defined]
                return  # the reconciler settled it first (and audited it)
            session.execute(
                update(ProductionAlias)
                .where(col(ProductionAlias.pending_id) == planned.move_id)
                .values(pending_id=None)
            )
            audit.record(
                session,
                user_id=user_id,
                action=str(planned.action),
                allowed=True,
                project_id=planned.project_id,
                target=f"v{planned.version}",
                detail=detail,
            )
    except Exception:  # the database is away: the move stays pending and the reconciler reverts it
        log.exception("could not record a failed move", extra={"move_id": planned.move_id})


# --- the reconciler ----------------------------------------------------------------------------


def abandoned_after(settings: Settings) -> timedelta:
    """How long a move may stay under way before it counts as abandoned: two hook timeouts (the
    hook itself, and the revert a failing commit triggers) and half a minute for the database."""
    return timedelta(seconds=2 * settings.ftbot_deploy_hook_timeout + 30)


def _owner_gone(owner: str) -> bool:
    """Whether the process named `owner` (``host:pid``) is known to be dead: only a process on this
    host can be checked; elsewhere only time tells."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _aware(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def reconcile_moves(engine: Engine, settings: Settings) -> list[Reconciled]:
    """Settle every move left under way by a process that died or lost the database, clear staged
    manifests nobody will use, and bring manifests that disagree with the database back in line
    (telling the hook). Each project is handled on its own: one failure does not stop the pass.

    Returns:
        What was done, project by project, for the channel.
    """
    outcomes: list[Reconciled] = []
    with session_scope(engine) as session:
        open_moves = session.exec(
            select(Deployment.id).where(col(Deployment.state).in_(OPEN_DEPLOY_STATES))
        ).all()
        names = list(session.exec(select(Project.name)).all())
    for move_id in open_moves:
        assert move_id is not None
        try:
            outcome = settle_move(engine, settings, move_id)
        except Exception:
            log.exception("could not settle a deployment; trying again later", extra={"move_id": move_id})
            continue
        if outcome is not None:
            outcomes.append(outcome)
    for name in names:
        try:
            outcome = _check_manifest(engine, settings, name)
        except Exception:
            log.exception("could not check a deployment manifest", extra={"project": name})
            continue
        if outcome is not None:
            outcomes.append(outcome)
    for outcome in outcomes:
        log.warning(
            "reconciled a deployment",
            extra={"project": outcome.project, "outcome": outcome.outcome, "detail": outcome.detail},
        )
    return outcomes


def settle_move(engine: Engine, settings: Settings, move_id: int, *, now: bool = False) -> Reconciled | None:
    """Finish (committed) or revert (pending) one move if it is abandoned, or at once with `now`
    (the mover itself, when its commit failed). None when there was nothing to do."""
    me = process_owner()
    with session_scope(engine) as session:
        move = session.get(Deployment, move_id)
        if move is None or move.state not in OPEN_DEPLOY_STATES:
            return None
        since = _aware(move.owner_since) or _aware(move.at)
        stale = since is not None and since < utcnow() - abandoned_after(settings)
        if not (now or stale or _owner_gone(move.owner)):
            return None
        # Claim the move (a compare-and-set on its owner), so that its mover, if it is still alive
        # after all, cannot commit it behind the reconciler's back, and no other reconciler acts on it.
        claimed = session.execute(
            update(Deployment)
            .where(
                col(Deployment.id) == move_id,
                col(Deployment.state) == move.state,
                col(Deployment.owner) == move.owner,
            )
            .values(owner=me, owner_since=utcnow())
        )
        if not claimed.rowcount:  # type: ignore[attr-defined]
            return None
        project = session.get(Project, move.project_id)
        assert project is not None
        state, action, by, reason = move.state, str(move.action), move.by, move.reason
        target = _number(session, move.version_id)
    if state == DeployState.COMMITTED:
        return _finish_committed(engine, settings, project, move_id, action, by, target)
    return _revert(engine, settings, project, move_id, action, by, reason, target)


def _current_document(session: Session, project: Project, action: str) -> tuple[dict[str, Any], int | None]:
    current_alias = alias(session, project)
    serving = production(session, project)
    return _document(project, serving, current_alias.revision, action, RECONCILER), (
        serving.number if serving else None
    )


def _finish_committed(
    engine: Engine,
    settings: Settings,
    project: Project,
    move_id: int,
    action: str,
    by: str,
    target: int | None,
) -> Reconciled:
    """The alias moved but the manifest may not have been written: write it from the database."""
    with session_scope(engine) as session:
        document, serving = _current_document(session, project, action)
    manifest = deploy.manifest_path(settings, project)
    deploy.stage(manifest, document)
    deploy.staged_path(settings, project, move_id).unlink(missing_ok=True)
    detail = f"finished the {action} to v{target} by {_who(by)}: the manifest now names v{serving}"
    with session_scope(engine) as session:
        session.execute(
            update(Deployment)
            .where(col(Deployment.id) == move_id, col(Deployment.state) == DeployState.COMMITTED)
            .values(state=DeployState.DONE, finished_at=utcnow())
        )
        session.execute(
            update(ProductionAlias).where(col(ProductionAlias.pending_id) == move_id).values(pending_id=None)
        )
        audit.record(
            session,
            user_id=RECONCILER,
            action=action,
            allowed=True,
            project_id=project.id,
            target=f"v{target}",
            detail=detail,
        )
    return Reconciled(project.name, project.channel_id, "finished", action, target, serving, by, detail)


def _revert(
    engine: Engine,
    settings: Settings,
    project: Project,
    move_id: int,
    action: str,
    by: str,
    reason: str,
    target: int | None,
) -> Reconciled:
    """The move never committed: tell the hook again what the database says, then end the move."""
    with session_scope(engine) as session:
        document, serving = _current_document(session, project, "revert")
    staged = deploy.staged_path(settings, project, move_id)
    deploy.stage(staged, document)
    try:
        deploy.call_hook(settings, staged, document)
    except DeployHookError as exc:
        staged.unlink(missing_ok=True)
        detail = (
            f"the {action} to v{target} by {_who(by)} was interrupted, and telling the deploy hook to keep "
            f"{_v(serving)} failed ({exc}); trying again in {abandoned_after(settings).seconds // 60} min"
        )
        return Reconciled(project.name, project.channel_id, "stuck", action, target, serving, by, detail)
    detail = (
        "not done: interrupted before it was committed (the process stopped or lost the database); "
        f"the deploy hook was told again to keep {_v(serving)}"
    )
    with session_scope(engine) as session:
        ended = session.execute(
            update(Deployment)
            .where(col(Deployment.id) == move_id, col(Deployment.state) == DeployState.PENDING)
            .values(state=DeployState.REVERTED, detail=detail, finished_at=utcnow())
        )
        if ended.rowcount:  # type: ignore[attr-defined]
            session.execute(
                update(ProductionAlias)
                .where(col(ProductionAlias.pending_id) == move_id)
                .values(pending_id=None)
            )
            audit.record(
                session,
                user_id=by,
                action=action,
                allowed=True,
                project_id=project.id,
                target=f"v{target}",
                detail=detail + (f" ({reason})" if reason else ""),
            )
    if serving is not None:
        os.replace(staged, deploy.manifest_path(settings, project))
    else:
        staged.unlink(missing_ok=True)
    said = (
        f"the {action} of {project.name} to v{target} by {_who(by)} was interrupted before it was committed"
    )
    return Reconciled(project.name, project.channel_id, "reverted", action, target, serving, by, said)


def _check_manifest(engine: Engine, settings: Settings, name: str) -> Reconciled | None:
    """Clear unused staged manifests; when no move is under way and the manifest names another
    version than the database, tell the hook what the database says and rewrite the manifest."""
    with session_scope(engine) as session:
        project = projects.get_project(session, name)
        current_alias = alias(session, project)
        if current_alias.pending_id is not None:
            return None
        open_ids = set(
            session.exec(
                select(Deployment.id).where(
                    Deployment.project_id == project.id, col(Deployment.state).in_(OPEN_DEPLOY_STATES)
                )
            ).all()
        )
        document, serving = _current_document(session, project, "reconcile")
    old_enough = utcnow() - abandoned_after(settings)
    for path, move_id in deploy.stray_files(settings, project).items():
        if move_id in open_ids:
            continue
        if move_id is None and _mtime(path) > old_enough:
            continue  # a name from an older release: left alone until surely abandoned
        path.unlink(missing_ok=True)
        log.info("removed a stray staged manifest", extra={"path": str(path)})
    if serving is None:
        return None
    manifest = deploy.manifest_path(settings, project)
    written = deploy.read_manifest(manifest)
    if written is None:
        deploy.stage(manifest, document)  # lost (a new volume): the hook was told at the move
        return None
    if written.get("version") == serving and written.get("revision") == current_alias.revision:
        return None
    said = written.get("version")
    deploy.call_hook(settings, manifest, document)
    deploy.stage(manifest, document)
    detail = f"the manifest named v{said}, the database v{serving}: the deploy hook was told v{serving}"
    with session_scope(engine) as session:
        audit.record(
            session,
            user_id=RECONCILER,
            action="reconcile",
            allowed=True,
            project_id=project.id,
            target=f"v{serving}",
            detail=detail,
        )
    return Reconciled(
        project.name,
        project.channel_id,
        "redeployed",
        "reconcile",
        said if isinstance(said, int) else None,
        serving,
        RECONCILER,
        detail,
    )


def _mtime(path: Path) -> datetime:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return utcnow()


# --- what people ask for -----------------------------------------------------------------------


def request_move(
    engine: Engine,
    settings: Settings,
    person: Person,
    action: str,
    *,
    project_name: str,
    number: int | None = None,
    reason: str = "",
    expected: Seen | None = None,
    again: bool = False,
) -> Move:
    """A person asks to promote or roll back: decided and recorded (`runner.core.policy.perform`
    runs `plan`), then carried out (`carry_out`), which writes the attempt's audit row.

    Raises:
        NotAllowed: the person may not (promote: owners and trainers; rollback: on-call).
        RegistryError: it cannot be done (the message says why); the attempt is audited.
    """
    planned = perform(
        engine,
        settings,
        Action(action),
        person,
        load=lambda session: projects.get_project(session, project_name),
        work=lambda session, project: plan(
            session,
            settings,
            project,
            action,
            by=person.user_id,
            number=number,
            reason=reason,
            expected=expected,
            again=again,
        ),
        target=f"v{number}" if number is not None else "",
        audit_done=False,
    )
    return carry_out(engine, settings, planned, user_id=person.user_id)


def request_discard(
    engine: Engine, settings: Settings, person: Person, *, project_name: str, number: int
) -> int:
    """A person asks to discard version `number` (owners and trainers), decided and audited.

    Returns:
        The discarded version's number.
    """
    return perform(
        engine,
        settings,
        Action.DISCARD,
        person,
        load=lambda session: projects.get_project(session, project_name),
        work=lambda session, project: discard(session, project, number, by=person.user_id).number,
        target=f"v{number}",
    )


def open_moves(session: Session, project: Project) -> Sequence[Deployment]:
    """Moves of `project` under way (for status displays)."""
    return session.exec(
        select(Deployment).where(
            Deployment.project_id == project.id, col(Deployment.state).in_(OPEN_DEPLOY_STATES)
        )
    ).all()
