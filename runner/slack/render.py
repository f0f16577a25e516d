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
