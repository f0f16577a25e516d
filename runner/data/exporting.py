"""Export a dataset snapshot as fine-tuning files: chat-format JSONL plus a dataset card.

`train.jsonl` and `eval.jsonl` hold one ``{"messages": [...]}`` object per line, the format OpenAI
fine-tuning and TRL's ``SFTTrainer`` read: an optional system message (the project's instructions),
the example's input as the user message and its label or accepted target output as the assistant
message. `dataset_card.md` describes the snapshot for people, `dataset_card.json` for programs.

Every file is written to a temporary name in the output folder and renamed into place, so a crash
never leaves a half-written file. Rows come in example-id order, so the same snapshot always
exports to the same bytes.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session

from runner.core.exceptions import DatasetError
from runner.core.models import Project, Snapshot, SnapshotExample, TaskType
from runner.data import snapshots, textnorm

TRAIN_FILE, EVAL_FILE = "train.jsonl", "eval.jsonl"
CARD_MD, CARD_JSON = "dataset_card.md", "dataset_card.json"
FORMAT = "messages"


@dataclass
class ExportResult:
    """What `export_snapshot` wrote."""

    snapshot_id: str
    out_dir: Path
    n_train: int
    n_eval: int
    redacted: bool
    files: dict[str, Path] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot_id,
            "out_dir": str(self.out_dir),
            "train": self.n_train,
            "eval": self.n_eval,
            "redacted": self.redacted,
            "files": {name: str(path) for name, path in self.files.items()},
        }


def write_atomic(path: Path, chunks: Iterable[str]) -> None:
    """Write text to `path` through a temporary file in the same folder, then rename it into place.

    Args:
        path: the final file; its folder must exist.
        chunks: the text, in pieces (a generator is fine: nothing is renamed unless it finishes).

    Raises:
        OSError: the folder is not writable (the temporary file is removed; `path` is untouched).
    """
    temp_name = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    # os.open with 0o666 honours the umask (tempfile.mkstemp would make the export owner-only).
    fd = os.open(temp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        temp_name.unlink(missing_ok=True)
        raise


def _redact_json_strings(value: Any) -> Any:
    """Redact every string inside a JSON value (keys stay: they are the project's field names)."""
    if isinstance(value, str):
        return textnorm.redact(value)
    if isinstance(value, list):
        return [_redact_json_strings(item) for item in value]
    if isinstance(value, dict):
        return {key: _redact_json_strings(item) for key, item in value.items()}
    return value


def _assistant_content(task_type: str, row: SnapshotExample, redact: bool) -> str:
    """The training target: the label as is; a target output with emails and phones redacted."""
    if task_type == TaskType.CLASSIFICATION or not redact:
        return row.target
    if task_type == TaskType.EXTRACTION:
        # Redacting the JSON text would turn a long number into a bare [PHONE] and break the JSON.
        try:
            original = json.loads(row.target)
        except json.JSONDecodeError:
            return textnorm.redact(row.target)
        redacted = _redact_json_strings(original)
        return row.target if redacted == original else json.dumps(redacted, ensure_ascii=False)
    return textnorm.redact(row.target)


def chat_record(task_type: str, instructions: str, row: SnapshotExample, *, redact: bool) -> dict[str, Any]:
    """One example in chat ``messages`` format.

    Args:
        task_type: the project's task type (a `TaskType` value).
        instructions: the system prompt; no system message when empty.
        row: the frozen example.
        redact: replace emails and phone numbers in the input and target output.

    Returns:
        ``{"messages": [system?, user, assistant]}``.
    """
    messages = [{"role": "system", "content": instructions}] if instructions else []
    messages.append(
        {"role": "user", "content": textnorm.redact(row.input_text) if redact else row.input_text}
    )
    messages.append({"role": "assistant", "content": _assistant_content(task_type, row, redact)})
    return {"messages": messages}


def utc_iso(moment: datetime) -> str:
    """ISO 8601 in UTC; SQLite hands timestamps back without a zone, and ftbot stores them all in UTC."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def dataset_card(
    project: Project, snapshot: Snapshot, rows: list[SnapshotExample], *, redact: bool
) -> dict[str, Any]:
    """The machine-readable card: counts, agreement, legend, hash and how the files were made.

    Args:
        project: the snapshot's project.
        snapshot: the snapshot exported.
        rows: its rows (`snapshots.snapshot_rows`).
        redact: whether emails and phone numbers were redacted.

    Returns:
        A JSON-serialisable dict (see `export_snapshot` for the keys).
    """
    frozen = snapshot.stats
    task_type = str(frozen.get("task_type", project.task_type))
    per_label: dict[str, dict[str, int]] = {}
    for row in rows:
        key = row.label if task_type == TaskType.CLASSIFICATION else "accepted"
        per_label.setdefault(key, {"train": 0, "eval": 0})[row.split] += 1
    if task_type == TaskType.CLASSIFICATION:
        for label in frozen.get("legend", {}).values():  # labels with no example still show, as 0
            per_label.setdefault(label, {"train": 0, "eval": 0})
    agreement = frozen.get("agreement", {})
    return {
        "project": project.name,
        "snapshot": snapshot.id,
        "created_at": utc_iso(snapshot.created_at),
        "created_by": snapshot.created_by,
        "task_type": task_type,
        "format": FORMAT,
        "files": {"train": TRAIN_FILE, "eval": EVAL_FILE},
        "counts": {
            "train": sum(1 for r in rows if r.split == "train"),
            "eval": sum(1 for r in rows if r.split == "eval"),
            "total": len(rows),
            "per_label": dict(sorted(per_label.items())),
        },
        "agreement": {
            "method": agreement.get("method"),
            "coefficient": agreement.get("coefficient"),  # Cohen's κ or Krippendorff's α, as "method" says
            "percent": agreement.get("percent"),
            "raters": agreement.get("raters"),
            "items_compared": agreement.get("items_compared"),
        },
        "legend": {f":{emoji}:": value for emoji, value in frozen.get("legend", {}).items()},
        "fields": list(frozen.get("fields", [])),
        "instructions": _instructions(project, snapshot),
        "redaction": redact,
    }


def _instructions(project: Project, snapshot: Snapshot) -> str:
    """The system prompt frozen with the snapshot (it is part of its hash), else the project's."""
    return str(snapshot.stats.get("instructions", project.instructions))


def _fmt(value: Any, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


_COEFFICIENT_NAMES = {"cohen": "Cohen's κ", "krippendorff": "Krippendorff's α"}


def card_markdown(card: dict[str, Any]) -> str:
    """The human-readable card rendered from `dataset_card`'s dict.

    Args:
        card: as returned by `dataset_card`.

    Returns:
        Markdown text.
    """
    counts, agreement = card["counts"], card["agreement"]
    lines = [
        f"# Dataset card: {card['project']}",
        "",
        f"- Snapshot: `{card['snapshot']}`",
        f"- Created: {card['created_at']}" + (f" by {card['created_by']}" if card["created_by"] else ""),
        f"- Task: {card['task_type']}",
        f"- Format: chat `messages` JSONL (`{card['files']['train']}`, `{card['files']['eval']}`)",
        f"- Examples: {counts['total']} ({counts['train']} train, {counts['eval']} eval)",
        "- Redaction: "
        + ("emails and phone numbers replaced by [EMAIL] / [PHONE]" if card["redaction"] else "off"),
        "",
        "## Counts",
        "",
        "| label | train | eval |",
        "|---|---:|---:|",
        *(f"| {_cell(label)} | {n['train']} | {n['eval']} |" for label, n in counts["per_label"].items()),
        "",
        "## Reviewer agreement",
        "",
        f"- Method: {agreement['method'] or 'n/a'}",
        f"- {_COEFFICIENT_NAMES.get(agreement['method'], 'Coefficient')}: {_fmt(agreement['coefficient'])}",
        f"- Percent agreement: {_fmt(agreement['percent'])}",
        f"- Raters: {_fmt(agreement['raters'])}",
        f"- Items with two or more votes: {_fmt(agreement['items_compared'])}",
    ]
    if card["legend"]:
        lines += [
            "",
            "## Emoji legend",
            "",
            *(f"- {emoji} → {value}" for emoji, value in card["legend"].items()),
        ]
    if card["fields"]:
        lines += ["", "## Fields", "", *(f"- `{name}`" for name in card["fields"])]
    lines += ["", "## Instructions (system prompt)", ""]
    lines += [f"> {line}" if line else ">" for line in card["instructions"].splitlines()] or ["(none)"]
    return "\n".join(lines) + "\n"


def _jsonl(records: Iterable[dict[str, Any]]) -> Iterable[str]:
    for record in records:
        yield json.dumps(record, ensure_ascii=False) + "\n"


def export_snapshot(
    session: Session, project: Project, snapshot: Snapshot, out_dir: Path, *, redact: bool = True
) -> ExportResult:
    """Write `snapshot` as `train.jsonl`, `eval.jsonl`, `dataset_card.md` and `dataset_card.json`.

    The card's JSON keys: project, snapshot (the content hash), created_at, created_by, task_type,
    format, files, counts (train, eval, total, per_label → {train, eval}), agreement (method, coefficient,
    percent, raters, items_compared), legend (``:emoji:`` → value), fields, instructions, redaction.

    Args:
        session: a database session.
        project: the project the snapshot belongs to.
        snapshot: the snapshot to export (`snapshots.get_snapshot` / `latest_snapshot`).
        out_dir: the folder to write into (created if missing); files there are replaced.
        redact: replace emails and phone numbers in inputs and target outputs (labels are kept).

    Returns:
        The counts and the paths written.

    Raises:
        DatasetError: the snapshot belongs to another project or has no rows.
        OSError: the folder cannot be written.
    """
    if snapshot.project_id != project.id:
        raise DatasetError(f"Snapshot {snapshot.id[:12]} is not a snapshot of {project.name}.")
    rows = snapshots.snapshot_rows(session, snapshot.id)
    if not rows:
        raise DatasetError(f"Snapshot {snapshot.id[:12]} has no examples.")
    task_type = str(snapshot.stats.get("task_type", project.task_type))
    instructions = _instructions(project, snapshot)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_split = {name: [r for r in rows if r.split == name] for name in ("train", "eval")}  # id order kept
    for name, chosen in ((TRAIN_FILE, by_split["train"]), (EVAL_FILE, by_split["eval"])):
        write_atomic(
            out_dir / name, _jsonl(chat_record(task_type, instructions, r, redact=redact) for r in chosen)
        )
    card = dataset_card(project, snapshot, rows, redact=redact)
    write_atomic(out_dir / CARD_JSON, [json.dumps(card, indent=2, ensure_ascii=False) + "\n"])
    write_atomic(out_dir / CARD_MD, [card_markdown(card)])
    return ExportResult(
        snapshot_id=snapshot.id,
        out_dir=out_dir,
        n_train=len(by_split["train"]),
        n_eval=len(by_split["eval"]),
        redacted=redact,
        files={name: out_dir / name for name in (TRAIN_FILE, EVAL_FILE, CARD_JSON, CARD_MD)},
    )
