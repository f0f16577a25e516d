"""Import labeled examples from a JSONL or CSV file into a dataset project.

Accepted rows (JSON Lines, one object per line; a ``.json`` file may also hold one JSON array):

* ``{"input"|"text": ..., "label": ...}`` for classification;
* ``{"input"|"text": ..., "output"|"target": ...}`` for extraction (the target a JSON object, or a
  string holding one, with exactly the project's fields) and generation;
* ``{"messages": [...]}`` in chat format: the user message is the input, the assistant message the
  label or target; a system message is ignored.

CSV files need a header with an ``input`` or ``text`` column and a ``label`` (classification) or
``output``/``target`` column. Every row is validated on its own: valid rows are added even when
others are rejected, and each rejected row is reported with its number (the line number for JSON
Lines, the record number after the header for CSV, the item number for a JSON array) and the reason.

Rows are checked against limits before they are used: a field longer than `MAX_FIELD_CHARS`, a
JSON value nested deeper than `MAX_DEPTH`, a NUL character anywhere (PostgreSQL cannot store it, so
it is refused on every database), or text that shows nothing (only spaces or invisible characters)
rejects the row, never the import. A row the database refuses for any other reason is rolled back
alone (a savepoint) and reported too.

Imported examples count as decided (``final_label`` is the label, or ``accept`` for target tasks),
so they go straight into snapshots. Each row's message id is derived from the file's content hash
and the row number: importing the same file again adds nothing, and an import that was interrupted
(the caller commits every `CHECKPOINT_ROWS` rows) resumes where it stopped when run again.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DataError, IntegrityError
from sqlmodel import Session

from runner.core.exceptions import DatasetError
from runner.core.models import Example, Project, TaskType
from runner.data import examples, gates, projects, textnorm

log = logging.getLogger(__name__)

SOURCE = "import"
# Far beyond any useful example (examples past 4,000 characters are already flagged overlong), and
# below what would make one row cost real memory.
MAX_FIELD_CHARS = 100_000
MAX_DEPTH = 32  # nesting of a JSON row; chat records need 4
CHECKPOINT_ROWS = 200
INPUT_KEYS = ("input", "text")
TARGET_KEYS = ("output", "target")
FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv"}
# Example.message_ts holds 48 characters: "import:" + 24 hex digits (96 bits of the file hash) + ":" +
# the row number leaves room for 16-digit row numbers.
HASH_CHARS = 24
_JSON_TYPES = {
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


@dataclass
class ImportReport:
    """The outcome of one `import_file` call."""

    path: Path
    file_hash: str
    added: int = 0
    skipped: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.added + self.skipped + len(self.rejected)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "sha256": self.file_hash,
            "rows": self.rows,
            "added": self.added,
            "skipped": self.skipped,
            "rejected": [{"row": row, "reason": reason} for row, reason in self.rejected],
        }


class _Rejected(Exception):
    """One row does not fit; the message is the reason shown in the report."""


@dataclass(frozen=True)
class _Row:
    input: str
    answer: str  # the label (classification) or the target output


def _read_text(path: Path) -> tuple[str, str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    try:
        return data.decode("utf-8-sig"), hashlib.sha256(data).hexdigest()
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path.name} is not UTF-8 text (byte {exc.start}).") from exc


def _json_records(text: str, *, allow_array: bool) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value or the `_Rejected` reason); blank lines are passed over.

    With `allow_array` (a ``.json`` file) a file holding one JSON array yields its items, numbered from 1.
    """
    if allow_array and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            items = None  # not one array after all: read it line by line and report each line
        if isinstance(items, list):
            yield from enumerate(items, start=1)
            return
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, _Rejected(f"malformed JSON: {exc.msg} (column {exc.colno})")
        except RecursionError:
            yield number, _Rejected(f"JSON nested more than {MAX_DEPTH} levels deep")


def _csv_records(project: Project, name: str, text: str) -> Iterator[tuple[int, Any]]:
    """(record number after the header, dict of the row or the `_Rejected` reason).

    Raises:
        DatasetError: the header lacks the input column or the label/target column.
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        first = next(reader, [])
    except csv.Error as exc:
        raise DatasetError(f"{name}: the CSV header cannot be read ({exc}).") from exc
    header = [cell.strip().lower() for cell in first]
    if not set(INPUT_KEYS) & set(header):
        raise DatasetError(
            f"{name}: the CSV header needs an input or text column; it has: {', '.join(header)}."
        )
    wanted = ("label", *TARGET_KEYS) if project.task_type == TaskType.CLASSIFICATION else TARGET_KEYS
    if not set(wanted) & set(header):
        raise DatasetError(
            f"{name}: the CSV header needs a {' or '.join(wanted)} column for a {project.task_type} project; "
            f"it has: {', '.join(header)}."
        )
    number = 0
    while True:
        number += 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # a malformed record: reported, and reading goes on at the next line
            yield number, _Rejected(f"malformed CSV: {exc}")
            continue
        if not any(cell.strip() for cell in record):
            continue
        if len(record) != len(header):
            yield number, _Rejected(f"{len(record)} values, but the header has {len(header)} columns")
        else:
            yield number, dict(zip(header, record, strict=True))


def _first(value: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((value[key] for key in keys if value.get(key) is not None), None)


def _from_messages(messages: Any) -> tuple[Any, Any]:
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise _Rejected("messages must be a list of objects with role and content")
    by_role: dict[str, list[Any]] = {}
    for message in messages:
        by_role.setdefault(str(message.get("role")), []).append(message.get("content"))
    users, assistants = by_role.get("user", []), by_role.get("assistant", [])
    if len(users) > 1 or len(assistants) > 1:
        raise _Rejected("only single-turn conversations (one user and one assistant message) can be imported")
    return (users[0] if users else None), (assistants[0] if assistants else None)


def _text(value: Any, what: str) -> str:
    if value is None:
        raise _Rejected(f"missing {what}")
    if not isinstance(value, str):
        raise _Rejected(f"the {what} must be text, not {type(value).__name__}")
    if not value.strip():
        raise _Rejected(f"empty {what}")
    return value.strip()


@contextmanager
def _csv_fields_up_to(limit: int) -> Iterator[None]:
    """Let the csv module read fields up to `limit` characters (its default stops at 131,072, which
    would end the whole import); longer fields are then rejected row by row by `_check_limits`.
    The limit is process-wide, so it is restored afterwards."""
    previous = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _check_limits(value: Any) -> None:
    """Reject a row with a field over `MAX_FIELD_CHARS`, nesting deeper than `MAX_DEPTH`, or a NUL
    character anywhere (keys included).

    Raises:
        _Rejected: with the reason.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _Rejected(f"JSON nested more than {MAX_DEPTH} levels deep")
        if isinstance(item, dict):
            stack.extend((key, depth) for key in item)
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            if len(item) > MAX_FIELD_CHARS:
                raise _Rejected(f"a field of {len(item):,} characters (at most {MAX_FIELD_CHARS:,})")
            if textnorm.NUL in item:
                raise _Rejected("contains a NUL character (\\u0000), which cannot be stored")


def _parse_row(project: Project, value: Any, labels: list[str]) -> _Row:
    """The row's input and label/target, validated against the project.

    Raises:
        _Rejected: with the reason.
    """
    if isinstance(value, _Rejected):
        raise value
    _check_limits(value)
    if not isinstance(value, dict):
        raise _Rejected(f"not an object (a JSON {_JSON_TYPES.get(type(value), type(value).__name__)})")
    classification = project.task_type == TaskType.CLASSIFICATION
    if "messages" in value:
        source, answer = _from_messages(value["messages"])
    else:
        source = _first(value, INPUT_KEYS)
        answer = _first(value, ("label", *TARGET_KEYS) if classification else TARGET_KEYS)
    text = _text(source, "input")
    if classification:
        label = _text(answer, "label").lower()
        if label not in labels:
            raise _Rejected(f"label {label!r} is not one of the project's labels ({', '.join(labels)})")
        return _Row(text, label)
    if project.task_type == TaskType.EXTRACTION and isinstance(answer, dict):
        answer = json.dumps(answer, ensure_ascii=False)
    target = _text(answer, "target output")
    if project.task_type == TaskType.EXTRACTION:
        try:
            examples.check_extraction_target(project, target)
        except DatasetError as exc:
            raise _Rejected(str(exc)) from exc
    return _Row(text, target)


def _duplicate_key(text: str) -> str:
    """Inputs that differ only in Slack formatting or whitespace are the same example."""
    return " ".join(textnorm.slack_to_plain(text).split())


def _already_there(example: Example) -> str:
    how = "imported" if example.source == SOURCE else f"in the project (from {example.source})"
    return f"already {how} as example {example.id}"


def message_ts(file_hash: str, row: int) -> str:
    """The stable message id of row `row` of the file with sha256 `file_hash` (at most 48 characters)."""
    return f"{SOURCE}:{file_hash[:HASH_CHARS]}:{row}"


def import_file(
    session: Session,
    project: Project,
    path: Path,
    *,
    imported_by: str,
    checkpoint: Callable[[], None] | None = None,
) -> ImportReport:
    """Validate every row of a JSONL or CSV file and add the valid ones to `project` as decided examples.

    A row is rejected (with its number and reason) when it is malformed JSON, not an object, has no
    or an empty input, a label outside the project's legend, no target for a target task, an
    extraction target that is not a JSON object with exactly the project's fields, repeats the input
    of an earlier row of the file, or repeats an example already in the project, breaks a limit (see
    the module docstring) or is refused by the database. A row of this same file imported before is
    skipped. Each row is written in a savepoint of its own, so a refused row leaves the others.

    Args:
        session: a database session.
        project: the project to add to.
        path: a ``.jsonl``, ``.json`` or ``.csv`` file (UTF-8).
        imported_by: who imports (recorded as ``decided_by = "import:<imported_by>"``).
        checkpoint: called after every `CHECKPOINT_ROWS` added rows (the CLI commits there, so an
            interrupted import keeps what it added and a second run resumes).

    Returns:
        Counts of rows added and skipped, and the rejected rows with reasons.

    Raises:
        DatasetError: the file cannot be read, is not UTF-8, has an unsupported extension, or (CSV)
            its header lacks the input or the label/target column.
    """
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DatasetError(
            f"Cannot import {path.name}: use a .jsonl (or .json) file with one JSON object per line, "
            "or a .csv file."
        )
    text, file_hash = _read_text(path)
    with _csv_fields_up_to(max(len(text), MAX_FIELD_CHARS) + 1):
        if kind == "jsonl":
            records = list(_json_records(text, allow_array=path.suffix.lower() == ".json"))
        else:
            records = list(_csv_records(project, path.name, text))
    labels = sorted(set(projects.legend(project).values()))
    existing = {_duplicate_key(e.input_text): e for e in gates.live_examples(session, project)}
    seen: dict[str, int] = {}
    report = ImportReport(path=path, file_hash=file_hash)
    decided_by = f"{SOURCE}:{imported_by}"[:64]
    classification = project.task_type == TaskType.CLASSIFICATION
    for number, value in records:
        try:
            row = _parse_row(project, value, labels)
            key = _duplicate_key(row.input)
            if key in seen:
                raise _Rejected(f"duplicate of row {seen[key]}")
            seen[key] = number
            ts = message_ts(file_hash, number)
            if examples.find_example(session, project.id, "", ts) is not None:
                report.skipped += 1
                continue
            if key in existing:
                raise _Rejected(_already_there(existing[key]))
            with session.begin_nested():
                example, created = examples.add_example(
                    session,
                    project,
                    channel_id="",
                    message_ts=ts,
                    author_id="",
                    text=row.input,
                    target=None if classification else row.answer,
                    source=SOURCE,
                    final_label=row.answer if classification else projects.ACCEPT,
                    decided_by=decided_by,
                    normalise=False,  # imported text is plain already, not Slack markup
                )
        except (_Rejected, DatasetError) as exc:  # DatasetError: add_example's own checks
            report.rejected.append((number, str(exc)))
            continue
        except (DataError, IntegrityError) as exc:  # rolled back to the savepoint: the others are kept
            cause = type(getattr(exc, "orig", None) or exc).__name__
            log.warning("import row refused by the database", extra={"row": number, "error": str(exc)[:500]})
            report.rejected.append((number, f"the database refused it ({cause})"))
            continue
        existing[key] = example
        if created:
            report.added += 1
            if checkpoint is not None and report.added % CHECKPOINT_ROWS == 0:
                checkpoint()
        else:  # a concurrent import of the same file won the insert
            report.skipped += 1
    return report
