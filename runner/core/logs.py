"""Logging for every ftbot process: one JSON object per line in production, readable text in a terminal.

``FTBOT_LOG_FORMAT=json|text`` chooses; by default JSON when stderr is not a terminal (containers,
systemd) and text when it is. Fields passed with ``extra=`` become JSON keys. Every line goes through
`runner.core.redaction` first: no token, password or configured secret reaches the log.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime

from runner.core.redaction import RedactingFilter

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is emitted.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        document.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            document["exc"] = record.exc_text
        return json.dumps(document, default=str, ensure_ascii=False)


def configure(level: str = "INFO", fmt: str | None = None) -> None:
    """Set up the root logger once for this process."""
    fmt = fmt or os.environ.get("FTBOT_LOG_FORMAT") or ("text" if sys.stderr.isatty() else "json")
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
