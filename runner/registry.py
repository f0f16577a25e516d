"""The model registry: versions, the production alias, promote / rollback / discard, deployments.

`production` is an alias per project. Every move is a compare-and-set on the alias's revision
inside one transaction, so two on-call engineers pressing Rollback at once (or one pressing twice)
move it once, and a button on an old message acts only if the state it was drawn from still holds.
The active adapter is written to ``FTBOT_DATA_DIR/deploy/<project>.json`` and the optional deploy
hook is called before the move commits: a failing hook leaves the alias where it was.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from runner.config import Settings
from runner.exceptions import RegistryError, StaleRegistryAction
from runner.models import Deployment, ModelVersion, ProductionAlias, Project, VersionStatus, utcnow

log = logging.getLogger(__name__)
HOOK_TIMEOUT_S = 60


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
    """The project's production alias (created empty on first use)."""
    assert project.id is not None
    found = session.get(ProductionAlias, project.id)
    if found is None:
        found = ProductionAlias(project_id=project.id)
        session.add(found)
        session.commit()
    return found


def production(session: Session, project: Project) -> ModelVersion | None:
    """The version in production, if any."""
    current = alias(session, project)
    return session.get(ModelVersion, current.version_id) if current.version_id else None


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
    expected_production: int | None | str = "current",
) -> Move:
    """Make version `number` the production version.

    Args:
        expected_production: the version number the caller saw in production (None for none);
            "current" skips the check (terminal use).

    Raises:
        RegistryError: unknown or discarded version, or it already serves.
        StaleRegistryAction: production changed since the caller looked.
        DeployHookError: the hook failed; nothing changed.
    """
    version = get_version(session, project, number)
    if version.status == VersionStatus.DISCARDED.value:
        raise RegistryError(f"v{number} was discarded and cannot be promoted.")
    return _move(session, settings, project, version, "promote", by, reason, expected_production)


def rollback(
    session: Session,
    settings: Settings,
    project: Project,
    *,
    by: str,
    to: int | None = None,
    reason: str = "",
    expected_production: int | None | str = "current",
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
    if target.status == VersionStatus.DISCARDED.value:
        raise RegistryError(f"v{target.number} was discarded and cannot serve.")
    return _move(session, settings, project, target, "rollback", by, reason, expected_production)


def discard(session: Session, project: Project, number: int, *, by: str) -> ModelVersion:
    """Mark a candidate discarded (it can no longer be promoted).

    Raises:
        RegistryError: the version serves in production, or is not a candidate.
    """
    version = get_version(session, project, number)
    if version.status != VersionStatus.CANDIDATE.value:
        raise RegistryError(f"v{number} is {version.status}; only a candidate can be discarded.")
    version.status = VersionStatus.DISCARDED.value
    session.add(version)
    session.commit()
    return version


def _move(
    session: Session,
    settings: Settings,
    project: Project,
    target: ModelVersion,
    action: str,
    by: str,
    reason: str,
    expected_production: int | None | str,
) -> Move:
    current_alias = alias(session, project)
    current = session.get(ModelVersion, current_alias.version_id) if current_alias.version_id else None
    current_number = current.number if current else None
    if expected_production != "current" and expected_production != current_number:
        seen = f"v{expected_production}" if expected_production else "no version"
        now = f"v{current_number}" if current_number else "nothing"
        raise StaleRegistryAction(f"{seen} is no longer in production ({now} is); nothing changed.")
    if current is not None and current.id == target.id:
        raise StaleRegistryAction(f"v{target.number} is already in production; nothing changed.")
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
        session.rollback()
        raise StaleRegistryAction("Production was changed by someone else a moment ago; nothing changed.")
    manifest = manifest_path(settings, project)
    document = {
        "project": project.name,
        "version": target.number,
        "adapter_path": target.artifact_path,
        "base_model": target.base_model,
        "snapshot": target.snapshot_id,
        "revision": current_alias.revision + 1,
        "action": action,
        "by": by,
        "at": utcnow().isoformat(),
    }
    staged = _stage(manifest, document)
    try:
        _call_hook(settings.ftbot_deploy_hook, staged, document)
    except Exception:
        session.rollback()
        staged.unlink(missing_ok=True)
        raise
    target.status = VersionStatus.PRODUCTION.value
    session.add(target)
    if current is not None:
        current.status = VersionStatus.RETIRED.value
        session.add(current)
    session.add(
        Deployment(
            project_id=project.id or 0,
            action=action,
            version_id=target.id or 0,
            previous_version_id=current.id if current else None,
            by=by,
            reason=reason,
            revision=current_alias.revision + 1,
        )
    )
    os.replace(staged, manifest)  # the manifest and the alias change together
    session.commit()
    return Move(project.name, action, target.number, current_number, by, reason, manifest)


def audited_move(
    session: Session,
    settings: Settings,
    project: Project,
    action: str,
    *,
    by: str,
    number: int | None = None,
    reason: str = "",
    expected_production: int | None | str = "current",
) -> Move:
    """Promote (`number`) or roll back (to `number`, or the previous version), and audit the attempt
    as allowed — done, or not done and why (the caller has already checked who may).

    Raises:
        RegistryError: as `promote` / `rollback`, after the attempt is in the audit log.
    """
    from runner import audit

    try:
        if action == "promote":
            if number is None:
                raise RegistryError("Say which version to promote.")
            move = promote(
                session,
                settings,
                project,
                number,
                by=by,
                reason=reason,
                expected_production=expected_production,
            )
        else:
            move = rollback(
                session,
                settings,
                project,
                by=by,
                to=number,
                reason=reason,
                expected_production=expected_production,
            )
    except RegistryError as exc:
        session.rollback()
        audit.record(
            session,
            user_id=by,
            action=action,
            allowed=True,
            project_id=project.id,
            target=f"v{number}" if number else "",
            detail=f"not done: {exc}",
        )
        raise
    audit.record(
        session,
        user_id=by,
        action=action,
        allowed=True,
        project_id=project.id,
        target=f"v{move.previous or '-'} → v{move.version}",
        detail=reason,
    )
    return move


def manifest_path(settings: Settings, project: Project) -> Path:
    return Path(settings.ftbot_data_dir) / "deploy" / f"{project.name}.json"


def _stage(manifest: Path, document: dict[str, Any]) -> Path:
    manifest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=manifest.parent, prefix=f".{manifest.stem}.", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(document, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    return Path(name)


def _call_hook(hook: str | None, manifest: Path, document: dict[str, Any]) -> None:
    """Tell the serving system about the new adapter: POST the manifest to a URL, or run a command
    with ``FTBOT_MANIFEST`` (and the main fields) in its environment.

    Raises:
        DeployHookError: non-2xx answer, unreachable URL, non-zero exit, or timeout.
    """
    from runner.exceptions import DeployHookError

    if not hook:
        return
    if hook.startswith(("http://", "https://")):
        request = urllib.request.Request(
            hook,
            data=json.dumps(document).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=HOOK_TIMEOUT_S) as response:
                if not 200 <= response.status < 300:
                    raise DeployHookError(f"deploy hook answered HTTP {response.status}")
        except OSError as exc:  # URLError, HTTPError and timeouts are OSErrors
            raise DeployHookError(f"deploy hook failed: {exc}") from exc
        return
    env = {
        **os.environ,
        "FTBOT_MANIFEST": str(manifest),
        "FTBOT_PROJECT": str(document["project"]),
        "FTBOT_VERSION": str(document["version"]),
        "FTBOT_ADAPTER_PATH": str(document["adapter_path"]),
        "FTBOT_BASE_MODEL": str(document["base_model"]),
    }
    try:
        done = subprocess.run(
            hook, shell=True, env=env, capture_output=True, text=True, timeout=HOOK_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        raise DeployHookError(f"deploy hook timed out after {HOOK_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()[-300:]
        raise DeployHookError(f"deploy hook exited {done.returncode}: {detail}")
