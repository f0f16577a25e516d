"""Predictions asked of model versions: recorded, claimed in batches by a predict worker, answered.

The database holds every prediction (Redis carries only its id): the request's input and the
version that answers it, then the answer, its confidence and timings. A pilot message is keyed by
Slack's ids, so a message delivered twice is predicted once. A predict worker claims the oldest
queued predictions together (a compare-and-set per row, so two workers never answer one twice) and
answers them as one batch, in the order they were asked.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import Session, col, select

from runner.core.db import insert_ignore
from runner.core.exceptions import PredictionError
from runner.core.models import (
    ModelVersion,
    Prediction,
    PredictionStatus,
    Project,
    Snapshot,
    TaskType,
    utcnow,
)
from runner.data import textnorm
from runner.data.projects import labels_of
from runner.registry import versions

# Stop at the first line of a classification answer: the label is all that is asked for.
MAX_NEW_TOKENS = {"classification": 16, "extraction": 256, "generation": 256}


@dataclass(frozen=True)
class Request:
    """What a predict worker needs to answer one prediction (read in a unit of work, then closed)."""

    prediction_id: int
    project_id: int
    project: str
    version: int
    task_type: str
    base_model: str
    adapter_dir: str
    quantize: bool
    messages: list[dict[str, str]]
    labels: list[str]

    @property
    def served_name(self) -> str:
        """The adapter's name on the worker and on an inference server: ``<project>-v<N>``."""
        return f"{self.project}-v{self.version}"


@dataclass(frozen=True)
class Answer:
    """One answer, as the worker stores it."""

    text: str
    label: str | None
    confidence: float | None
    seconds: float
    batch_size: int


def resolve_version(session: Session, project: Project, number: int | None) -> ModelVersion:
    """Version `number` of `project`, or the one in production when `number` is None.

    Raises:
        PredictionError: nothing serves (and no version was named).
    """
    if number is not None:
        return versions.get_version(session, project, number)
    serving = versions.production(session, project)
    if serving is None:
        raise PredictionError(f"Nothing of *{project.name}* is in production: name a version (vN).")
    return serving


def ask(
    session: Session,
    project: Project,
    version: ModelVersion,
    text: str,
    *,
    channel_id: str = "",
    message_ts: str | None = None,
    author_id: str = "",
    shadow: bool = False,
) -> tuple[Prediction, bool]:
    """Record a prediction of `text` by `version` (idempotent on the Slack message).

    Returns:
        ``(prediction, created)``: created is False for a message already asked about.
    """
    assert project.id is not None and version.id is not None
    row = Prediction(
        project_id=project.id,
        version_id=version.id,
        channel_id=channel_id,
        message_ts=message_ts or f"cli:{uuid.uuid4().hex}",
        author_id=author_id,
        input_text=text,
        shadow=shadow,
    )
    created = insert_ignore(session, row, conflict=("project_id", "version_id", "channel_id", "message_ts"))
    stored = session.exec(
        select(Prediction).where(
            Prediction.project_id == project.id,
            Prediction.version_id == version.id,
            Prediction.channel_id == row.channel_id,
            Prediction.message_ts == row.message_ts,
        )
    ).one()
    return stored, created


def claim(session: Session, limit: int) -> list[int]:
    """Claim up to `limit` of the oldest queued predictions for this worker (queued → running).

    Returns:
        The ids claimed, oldest first (each one a compare-and-set: another worker's claim wins).
    """
    candidates = session.exec(
        select(Prediction.id)
        .where(Prediction.status == PredictionStatus.QUEUED)
        .order_by(col(Prediction.id))
        .limit(limit)
    ).all()
    claimed = []
    for prediction_id in candidates:
        changed = session.execute(
            update(Prediction)
            .where(col(Prediction.id) == prediction_id, col(Prediction.status) == PredictionStatus.QUEUED)
            .values(status=PredictionStatus.RUNNING)
        )
        if changed.rowcount:  # type: ignore[attr-defined]
            claimed.append(int(prediction_id or 0))
    return claimed


def requests(session: Session, prediction_ids: Sequence[int]) -> list[Request]:
    """What the worker needs to answer each of `prediction_ids`, in that order."""
    found = []
    for prediction_id in prediction_ids:
        prediction = session.get(Prediction, prediction_id)
        assert prediction is not None
        version = session.get(ModelVersion, prediction.version_id)
        project = session.get(Project, prediction.project_id)
        assert version is not None and project is not None
        snapshot = session.get(Snapshot, version.snapshot_id)
        frozen = snapshot.stats if snapshot is not None else {}
        task_type = str(frozen.get("task_type", project.task_type))
        instructions = str(frozen.get("instructions", project.instructions))
        found.append(
            Request(
                prediction_id=prediction_id,
                project_id=prediction.project_id,
                project=project.name,
                version=version.number,
                task_type=task_type,
                base_model=version.base_model,
                adapter_dir=version.artifact_path,
                quantize=bool(version.config.get("quantize", True)),
                messages=prompt(instructions, prediction.input_text),
                labels=[label.name for label in labels_of(project)]
                if project.task_type == TaskType.CLASSIFICATION
                else [],
            )
        )
    return found


def prompt(instructions: str, text: str) -> list[dict[str, str]]:
    """The conversation a version answers: as training formatted it (`exporting.chat_record`),
    emails and phone numbers redacted, without the assistant's turn."""
    messages = [{"role": "system", "content": instructions}] if instructions else []
    messages.append({"role": "user", "content": textnorm.redact(text)})
    return messages


def record(session: Session, prediction_id: int, answer: Answer) -> None:
    """Store an answer (the prediction is done)."""
    prediction = session.get(Prediction, prediction_id)
    assert prediction is not None
    prediction.output_text = answer.text
    prediction.label = answer.label
    prediction.confidence = answer.confidence
    prediction.model_seconds = answer.seconds
    prediction.batch_size = answer.batch_size
    prediction.status = PredictionStatus.DONE
    prediction.answered_at = utcnow()
    session.add(prediction)


def fail(session: Session, prediction_id: int, error: str) -> None:
    prediction = session.get(Prediction, prediction_id)
    if prediction is not None:
        prediction.status = PredictionStatus.FAILED
        prediction.error = error[:2000]
        prediction.answered_at = utcnow()
        session.add(prediction)


def get(session: Session, prediction_id: int) -> Prediction:
    prediction = session.get(Prediction, prediction_id)
    if prediction is None:
        raise PredictionError(f"No prediction {prediction_id}.")
    return prediction


def max_new_tokens(task_type: str) -> int:
    return MAX_NEW_TOKENS.get(task_type, 256)
