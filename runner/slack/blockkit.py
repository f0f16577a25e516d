"""Slack's Block Kit limits, checked on every rendered message before it is sent.

Slack refuses a message that breaks one of these with an opaque `invalid_blocks`; finding the broken
field here gives a readable error instead. Limits from Slack's Block Kit reference.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

MAX_BLOCKS = {"message": 50, "modal": 100, "home": 100}
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_BUTTON_TEXT = 75
MAX_ID = 255  # action_id and block_id
MAX_BUTTON_VALUE = 2000
MAX_CONFIRM_TITLE = 100
MAX_CONFIRM_TEXT = 300
MAX_CONTEXT_ELEMENTS = 10
MAX_FALLBACK_TEXT = 40000


def _text(obj: Any) -> str:
    return obj.get("text", "") if isinstance(obj, dict) else ""


def _walk_elements(block: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if isinstance(block.get("accessory"), dict):
        yield block["accessory"]
    for element in block.get("elements", []) or []:
        if isinstance(element, dict):
            yield element
    if isinstance(block.get("element"), dict):
        yield block["element"]


def problems(payload: dict[str, Any], surface: str = "message") -> list[str]:
    """Every Block Kit limit that `payload` breaks.

    Args:
        payload: ``{"text": ..., "blocks": [...]}`` for a message, or a view for ``modal`` / ``home``.
        surface: ``"message"``, ``"modal"`` or ``"home"``.

    Returns:
        Human-readable problems, empty when the payload is within Slack's limits.
    """
    found: list[str] = []
    blocks = payload.get("blocks", [])
    if not isinstance(blocks, list):
        return ["blocks must be a list"]
    if len(blocks) > MAX_BLOCKS[surface]:
        found.append(f"{len(blocks)} blocks > {MAX_BLOCKS[surface]} allowed in a {surface}")
    if surface == "message" and not payload.get("text"):
        found.append("a message needs fallback text")
    if len(payload.get("text") or "") > MAX_FALLBACK_TEXT:
        found.append(f"fallback text longer than {MAX_FALLBACK_TEXT}")
    for i, block in enumerate(blocks):
        where = f"block {i} ({block.get('type', '?')})"
        if "type" not in block:
            found.append(f"{where}: no type")
        if len(block.get("block_id", "")) > MAX_ID:
            found.append(f"{where}: block_id longer than {MAX_ID}")
        if block.get("type") == "section":
            if len(_text(block.get("text"))) > MAX_SECTION_TEXT:
                found.append(f"{where}: text longer than {MAX_SECTION_TEXT}")
            for field in block.get("fields", []) or []:
                if len(_text(field)) > 2000:
                    found.append(f"{where}: a field longer than 2000")
        if block.get("type") == "header" and len(_text(block.get("text"))) > MAX_HEADER_TEXT:
            found.append(f"{where}: header longer than {MAX_HEADER_TEXT}")
        if block.get("type") == "context" and len(block.get("elements", [])) > MAX_CONTEXT_ELEMENTS:
            found.append(f"{where}: more than {MAX_CONTEXT_ELEMENTS} context elements")
        for element in _walk_elements(block):
            found.extend(f"{where}: {p}" for p in _element_problems(element))
    return found


def _element_problems(element: dict[str, Any]) -> list[str]:
    found = []
    if len(element.get("action_id", "")) > MAX_ID:
        found.append(f"action_id longer than {MAX_ID}")
    if element.get("type") == "button":
        if len(_text(element.get("text"))) > MAX_BUTTON_TEXT:
            found.append(f"button text longer than {MAX_BUTTON_TEXT}")
        if len(element.get("value", "")) > MAX_BUTTON_VALUE:
            found.append(f"button value longer than {MAX_BUTTON_VALUE}")
    confirm = element.get("confirm")
    if isinstance(confirm, dict):
        if len(_text(confirm.get("title"))) > MAX_CONFIRM_TITLE:
            found.append(f"confirm title longer than {MAX_CONFIRM_TITLE}")
        if len(_text(confirm.get("text"))) > MAX_CONFIRM_TEXT:
            found.append(f"confirm text longer than {MAX_CONFIRM_TEXT}")
    return found
