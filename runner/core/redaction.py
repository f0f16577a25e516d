"""Keeping secrets out of text that leaves the process: log lines, audit rows, Slack messages.

`redact` replaces, wherever they appear:

* the secret values this process was configured with (`remember` is called by `Settings` for the
  Slack tokens and signing secret, the passwords in ``DATABASE_URL`` and ``REDIS_URL``, the health
  token, and the variables handed to the deploy hook);
* anything shaped like a Slack token (``xoxb-…``, ``xapp-…``) or a Slack response URL;
* credentials inside URLs (``scheme://user:password@host`` keeps only the scheme and host);
* ``password=…``-style assignments and ``Authorization``/``Bearer`` values.

`RedactingFilter` applies it to every log record a handler emits (installed by
`runner.core.logs.configure`), so a traceback or a third-party library's message cannot carry a
secret into the logs either.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

MASK = "[redacted]"
# Shorter values are too likely to occur by chance ("test", "ftbot") to be replaced everywhere.
MIN_SECRET_CHARS = 6

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bxox[a-z]-[A-Za-z0-9-]+"), MASK),
    (re.compile(r"\bxapp-[A-Za-z0-9-]+"), MASK),
    (re.compile(r"https://hooks\.slack\.com/\S+"), "https://hooks.slack.com/" + MASK),
    (re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^\s/@:]*:[^\s/@]*@"), r"\1" + MASK + "@"),
    (
        re.compile(
            r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|signing[_-]?secret)"
            r"(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s&,;]+)"
        ),
        r"\1\2" + MASK,
    ),
    (
        re.compile(r"(?i)\b(authorization\s*[=:]\s*(?:(?:bearer|basic|token)\s+)?|bearer\s+)[^\s,;]+"),
        r"\1" + MASK,
    ),
)

_lock = threading.Lock()
_known: set[str] = set()
_known_pattern: re.Pattern[str] | None = None


def remember(values: Iterable[str | None]) -> None:
    """Add configured secret values to what `redact` replaces (for the life of the process)."""
    global _known_pattern
    fresh = {v for v in values if v and len(v) >= MIN_SECRET_CHARS}
    with _lock:
        if fresh <= _known:
            return
        _known.update(fresh)
        # Longest first, so a secret that contains another is replaced whole.
        ordered = sorted(_known, key=len, reverse=True)
        _known_pattern = re.compile("|".join(re.escape(v) for v in ordered))


def redact(text: str) -> str:
    """`text` without the secrets described in the module docstring."""
    if not text:
        return text
    pattern = _known_pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    for compiled, replacement in _PATTERNS:
        text = compiled.sub(replacement, text)
    return text


def short_reason(text: str, limit: int = 200) -> str:
    """The last non-empty line of `text` (what a failing command usually says last), redacted and
    cut to `limit` characters: what a person is told; the whole output goes to the log."""
    lines = [line.strip() for line in redact(text).splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return last if len(last) <= limit else last[: limit - 1] + "…"


class RedactingFilter(logging.Filter):
    """Redacts each record's message and exception text before a handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
            record.exc_info = None  # formatters use exc_text; the traceback object would be re-read
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
