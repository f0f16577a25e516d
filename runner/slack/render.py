"""Render a Slack message or view from its jinja2 template in `templates/`.

Templates emit JSON: every string goes through ``|tojson``, so quoting is never done by hand. The
result is parsed and checked against Block Kit's limits; a broken template raises `TemplateError`
naming the template, never a half-valid payload sent to Slack.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from runner.core.exceptions import TemplateError
from runner.slack import blockkit

# Installed wheels carry the templates inside the package; a source checkout has them at the top.
_RUNNER = Path(__file__).parent.parent
_CANDIDATES = (_RUNNER / "templates", _RUNNER.parent / "templates")


def template_dir() -> Path:
    """The folder holding the templates (inside the installed package, or the source checkout's)."""
    for candidate in _CANDIDATES:
        if candidate.is_dir():
            return candidate
    raise TemplateError(f"no templates folder found (looked in {', '.join(map(str, _CANDIDATES))})")


def _tojson(value: Any) -> str:
    """JSON for a template value; an undefined variable is an error naming it (StrictUndefined)."""
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises UndefinedError with the variable's name
    return json.dumps(value, ensure_ascii=False)


def _truncate(value: str, limit: int, marker: str = "…") -> str:
    return value if len(value) <= limit else value[: limit - len(marker)] + marker


def escape(text: str) -> str:
    """User text made safe for mrkdwn: ``&``, ``<`` and ``>`` as Slack's entities, so that text such
    as ``<!here>`` or ``<@U123>`` shows as typed instead of pinging anyone or rendering as a link."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def join_within(items: Any, separator: str, limit: int) -> str:
    """Join whole items while they fit in `limit` characters, then say how many were left out
    (``… and 12 more``): a long list never cuts an item (a mention, a label) in half."""
    values = [str(v) for v in items]
    lengths = [len(v) for v in values]
    if sum(lengths) + len(separator) * max(len(values) - 1, 0) <= limit:
        return separator.join(values)
    used = 0  # length of the first k items joined
    best = 0
    for k in range(1, len(values)):
        used += lengths[k - 1] + (len(separator) if k > 1 else 0)
        if used + len(separator) + len(f"… and {len(values) - k} more") > limit:
            break
        best = k
    more = f"… and {len(values) - best} more"
    return separator.join([*values[:best], more]) if best else _truncate(more, limit)


def chunked(items: Any, separator: str, limit: int) -> list[str]:
    """Every item, joined into as few pieces of at most `limit` characters as whole items allow
    (an item longer than `limit` alone is truncated)."""
    pieces: list[str] = []
    current = ""
    for value in (str(v) for v in items):
        value = _truncate(value, limit)
        if current and len(current) + len(separator) + len(value) > limit:
            pieces.append(current)
            current = value
        else:
            current = value if not current else current + separator + value
    if current:
        pieces.append(current)
    return pieces


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # the output is JSON; |tojson does the escaping
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters["truncate_to"] = _truncate
    env.filters["tojson"] = _tojson
    env.filters["esc"] = escape
    env.filters["join_within"] = join_within
    env.filters["chunked"] = chunked
    return env


def render(template: str, /, surface: str = "message", **context: Any) -> dict[str, Any]:
    """Render `template` with `context` into a Slack payload.

    Args:
        template: file name under ``templates/``, e.g. ``"interview_question.json.j2"``.
        surface: ``"message"`` (``{"text", "blocks"}``), ``"modal"`` or ``"home"`` (a view object).
        context: the template's variables; a missing one is an error (StrictUndefined).

    Returns:
        The parsed payload, ready for ``chat.postMessage(**payload)`` or ``views.open(view=payload)``.

    Raises:
        TemplateError: undefined variable, invalid JSON, or a Block Kit limit broken.
    """
    try:
        raw = environment().get_template(template).render(**context)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{template}: {exc}") from exc
    try:
        payload = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise TemplateError(f"{template} rendered invalid JSON: {exc}") from exc
    found = blockkit.problems(payload, surface)
    if found:
        raise TemplateError(f"{template} breaks Slack's limits: {'; '.join(found)}")
    return payload
