"""The model registry: versions, the production alias, promote / rollback / discard, deployments.

`production` is an alias per project. Every move is a compare-and-set on the alias's revision
inside one transaction, so two on-call engineers pressing Rollback at once (or one pressing twice)
move it once, and a button on an old message acts only if the state it was drawn from still holds.
The active adapter is written to ``FTBOT_DATA_DIR/deploy/<project>.json`` and the optional deploy
hook is called before the move commits: a failing hook leaves the alias where it was. Functions take
the caller's session and never commit.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from runner.core.config import Settings
from runner.core.db import insert_ignore
from runner.core.exceptions import RegistryError, StaleRegistryAction
from runner.core.models import (
    DeployAction,
    Deployment,
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


@dataclass(frozen=True)
class Seen:
    """What a button showed in production when it was drawn: it acts only if that still holds."""

    version: int | None


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
        served = session.exec(select(Deployment.id).where(Deployment.version_id == version.id)).first()
        if served is not None:
            return "retired"
    return str(version.status)


def history(session: Session, project: Project, limit: int = 20) -> list[Deployment]:
    return list(
        session.exec(
            select(Deployment)
            .where(Deployment.project_id == project.id)
            .order_by(col(Deployment.id).desc())
            .limit(limit)
        ).all()
    )


def previous_production(session: Session, project: Project) -> ModelVersion | None:
    """What served before the current production version (the rollback target)."""
    current = alias(session, project)
    for deployment in history(session, project, limit=200):
        if deployment.version_id == current.version_id and deployment.previous_version_id:
            return session.get(ModelVersion, deployment.previous_version_id)
    return None


def promote(
    session: Session,
    settings: Settings,
    project: Project,
    number: int,
    *,
    by: str,
    reason: str = "",
    expected: Seen | None = None,
) -> Move:
    """Make version `number` the production version.

    Args:
        expected: what the caller saw in production (a button carries it); None skips the check.

    Raises:
        RegistryError: unknown or discarded version, or it already serves.
        StaleRegistryAction: production changed since the caller looked.
        DeployHookError: the hook failed; nothing changed.
    """
    version = get_version(session, project, number)
    if version.status == VersionStatus.DISCARDED:
        raise RegistryError(f"v{number} was discarded and cannot be promoted.")
    return _move(session, settings, project, version, DeployAction.PROMOTE, by, reason, expected)


def rollback(
    session: Session,
    settings: Settings,
    project: Project,
    *,
    by: str,
    to: int | None = None,
    reason: str = "",
    expected: Seen | None = None,
) -> Move:
    """Move production back to what served before it, or to version `to`.

    Raises:
        RegistryError: nothing in production, or nothing to roll back to.
        StaleRegistryAction: production changed since the caller looked (e.g. already rolled back).
        DeployHookError: the hook failed; nothing changed.
    """
    current = production(session, project)
    if current is None:
        raise RegistryError(f"{project.name} has no version in production to roll back.")
    target = get_version(session, project, to) if to is not None else previous_production(session, project)
    if target is None:
        raise RegistryError(
            f"v{current.number} is the first production version of {project.name}: nothing before it."
        )
    if target.status == VersionStatus.DISCARDED:
        raise RegistryError(f"v{target.number} was discarded and cannot serve.")
    return _move(session, settings, project, target, DeployAction.ROLLBACK, by, reason, expected)


def discard(session: Session, project: Project, number: int, *, by: str) -> ModelVersion:
    """Mark a candidate discarded (it can no longer be promoted).

    Raises:
        RegistryError: the version serves in production, or is not a candidate.
    """
    version = get_version(session, project, number)
    if version.status != VersionStatus.CANDIDATE:
        raise RegistryError(f"v{number} is {version.status}; only a candidate can be discarded.")
    if production(session, project) is version:
        raise RegistryError(f"v{number} serves in production; roll it back before discarding it.")
    version.status = VersionStatus.DISCARDED
    session.add(version)
    return version


def _move(
    session: Session,
    settings: Settings,
    project: Project,
    target: ModelVersion,
    action: DeployAction,
    by: str,
    reason: str,
    expected: Seen | None,
) -> Move:
    assert project.id is not None
    insert_ignore(session, ProductionAlias(project_id=project.id), conflict=("project_id",))
    current_alias = alias(session, project)
    current = session.get(ModelVersion, current_alias.version_id) if current_alias.version_id else None
    current_number = current.number if current else None
    if expected is not None and expected.version != current_number:
        seen = f"v{expected.version}" if expected.version else "no version"
        now = f"v{current_number}" if current_number else "nothing"
        raise StaleRegistryAction(f"{seen} is no longer in production ({now} is); nothing changed.")
    if current is not None and current.id == target.id:
        raise StaleRegistryAction(f"v{target.number} is already in production; nothing changed.")
    # A savepoint: a move that fails (a concurrent mover, a failing hook) leaves the caller's unit
    # of work as it was.
    with session.begin_nested():
        # The compare-and-set: it takes the row lock, so a concurrent mover waits here and then finds
        # the revision changed.
        claimed = session.execute(
            update(ProductionAlias)
            .where(
                col(ProductionAlias.project_id) == project.id,
                col(ProductionAlias.revision) == current_alias.revision,
            )
            .values(version_id=target.id, revision=current_alias.revision + 1, updated_at=utcnow())
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            raise StaleRegistryAction("Production was changed by someone else a moment ago; nothing changed.")
        manifest = deploy.manifest_path(settings, project)
        document = {
            "project": project.name,
            "version": target.number,
            "adapter_path": target.artifact_path,
            "base_model": target.base_model,
            "snapshot": target.snapshot_id,
            "revision": current_alias.revision + 1,
            "action": str(action),
            "by": by,
            "at": utcnow().isoformat(),
        }
        staged = deploy.stage(manifest, document)
        try:
            deploy.call_hook(settings.ftbot_deploy_hook, staged, document)
        except Exception:
            staged.unlink(missing_ok=True)
            raise
        session.add(
            Deployment(
                project_id=project.id,
                action=action,
                version_id=target.id or 0,
                previous_version_id=current.id if current else None,
                by=by,
                reason=reason,
                revision=current_alias.revision + 1,
            )
        )
        session.flush()
        os.replace(staged, manifest)  # the manifest and the alias change together
    return Move(project.name, str(action), target.number, current_number, by, reason, manifest)


def apply(
    session: Session,
    settings: Settings,
    project: Project,
    action: str,
    *,
    by: str,
    number: int | None = None,
    reason: str = "",
    expected: Seen | None = None,
) -> Move:
    """Promote (`number`) or roll back (to `number`, or to what served before). Who may is the
    caller's to check (`runner.core.policy.perform` runs this as the audited action).

    Raises:
        RegistryError: as `promote` / `rollback`.
    """
    if action == DeployAction.PROMOTE:
        if number is None:
            raise RegistryError("Say which version to promote.")
        return promote(session, settings, project, number, by=by, reason=reason, expected=expected)
    return rollback(session, settings, project, by=by, to=number, reason=reason, expected=expected)


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
) -> Move:
    """A person asks to promote or roll back: decided and audited (`runner.core.policy.perform`),
    then applied (`apply`) in the same unit of work.

    Raises:
        NotAllowed: the person may not (promote: owners and trainers; rollback: on-call).
        RegistryError: it cannot be done (the message says why); the attempt is audited.
    """
    return perform(
        engine,
        settings,
        Action(action),
        person,
        load=lambda session: projects.get_project(session, project_name),
        work=lambda session, project: apply(
            session,
            settings,
            project,
            action,
            by=person.user_id,
            number=number,
            reason=reason,
            expected=expected,
        ),
        target=f"v{number}" if number is not None else "",
        detail=lambda move: f"v{move.previous or '-'} → v{move.version}" + (f": {reason}" if reason else ""),
    )


def request_discard(
    engine: Engine, settings: Settings, person: Person, *, project_name: str, number: int
) -> int:
    """A person asks to discard candidate `number` (owners and trainers), decided and audited.

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
