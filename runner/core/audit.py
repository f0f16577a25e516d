"""The audit log: every privileged attempt (adjudicate, train, promote, rollback), allowed or refused."""

from __future__ import annotations

from sqlmodel import Session, col, select

from runner.core.models import AuditEntry
from runner.core.redaction import redact


def record(
    session: Session,
    *,
    user_id: str,
    action: str,
    allowed: bool,
    project_id: int | None = None,
    target: str = "",
    detail: str = "",
) -> AuditEntry:
    """Append one entry to the caller's unit of work (`runner.core.policy.perform` writes them).
    Target and detail are redacted (`runner.core.redaction`): the log is read by people in Slack."""
    entry = AuditEntry(
        user_id=user_id,
        action=action,
        allowed=allowed,
        project_id=project_id,
        target=redact(target)[:128],
        detail=redact(detail),
    )
    session.add(entry)
    return entry


def entries(session: Session, *, project_id: int | None = None, limit: int = 50) -> list[AuditEntry]:
    """The latest entries, newest first (optionally for one project)."""
    query = select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(limit)
    if project_id is not None:
        query = query.where(AuditEntry.project_id == project_id)
    return list(session.exec(query).all())
