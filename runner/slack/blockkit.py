"""Slack's Block Kit limits, checked on every rendered message before it is sent.

Slack refuses a message that breaks one of these with an opaque `invalid_blocks`; finding the broken
field here gives a readable error instead. Limits from Slack's Block Kit reference.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

MAX_BLOCKS = {"message": 50, "modal": 100, "home": 100}
MAX_SECTION_TEXT = 3000
MAX_TEXT = 3000  # any text object (context elements included)
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_BUTTON_TEXT = 75
MAX_ID = 255  # action_id and block_id
MAX_BUTTON_VALUE = 2000
MAX_CONFIRM_TITLE = 100
MAX_CONFIRM_TEXT = 300
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
MAX_OPTIONS = 100
MAX_OPTION_TEXT = 75
MAX_OPTION_VALUE = 150
MAX_PLACEHOLDER = 150
MAX_VIEW_TITLE = 24  # title, submit and close of a modal
MAX_PRIVATE_METADATA = 3000
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

    These include the limits slack_sdk's models do not check (tests check both): text of context
    elements and section fields, button text and values, options and their text and values,
    placeholders, action ids, unique block ids, the blocks of a message, a modal's title and
    metadata.

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
    if surface == "modal":
        for key in ("title", "submit", "close"):
            if len(_text(payload.get(key))) > MAX_VIEW_TITLE:
                found.append(f"modal {key} longer than {MAX_VIEW_TITLE}")
        if len(payload.get("private_metadata") or "") > MAX_PRIVATE_METADATA:
            found.append(f"private_metadata longer than {MAX_PRIVATE_METADATA}")
    block_ids = [str(b["block_id"]) for b in blocks if isinstance(b, dict) and b.get("block_id")]
    for repeated in sorted({b for b in block_ids if block_ids.count(b) > 1}):
        found.append(f"block_id {repeated!r} used twice")
    for i, block in enumerate(blocks):
        where = f"block {i} ({block.get('type', '?')})"
        found.extend(f"{where}: {p}" for p in _block_problems(block))
    return found


def _block_problems(block: dict[str, Any]) -> list[str]:
    found = []
    kind = block.get("type")
    if kind is None:
        found.append("no type")
    if len(block.get("block_id", "")) > MAX_ID:
        found.append(f"block_id longer than {MAX_ID}")
    if kind == "section":
        if len(_text(block.get("text"))) > MAX_SECTION_TEXT:
            found.append(f"text longer than {MAX_SECTION_TEXT}")
        for field in block.get("fields", []) or []:
            if len(_text(field)) > MAX_FIELD_TEXT:
                found.append(f"a field longer than {MAX_FIELD_TEXT}")
    if kind == "header" and len(_text(block.get("text"))) > MAX_HEADER_TEXT:
        found.append(f"header longer than {MAX_HEADER_TEXT}")
    if kind == "context":
        if len(block.get("elements", [])) > MAX_CONTEXT_ELEMENTS:
            found.append(f"more than {MAX_CONTEXT_ELEMENTS} context elements")
        for element in block.get("elements", []):
            if element.get("type") in ("mrkdwn", "plain_text") and len(_text(element)) > MAX_TEXT:
                found.append(f"context text longer than {MAX_TEXT}")
    if kind == "actions":
        if len(block.get("elements", [])) > MAX_ACTIONS_ELEMENTS:
            found.append(f"more than {MAX_ACTIONS_ELEMENTS} elements in an actions block")
        action_ids = [e.get("action_id") for e in block.get("elements", []) if e.get("action_id")]
        if len(action_ids) != len(set(action_ids)):
            found.append("an action_id used twice in one block")
    for element in _walk_elements(block):
        found.extend(_element_problems(element))
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
    if len(_text(element.get("placeholder"))) > MAX_PLACEHOLDER:
        found.append(f"placeholder longer than {MAX_PLACEHOLDER}")
    options = element.get("options")
    if isinstance(options, list):
        if len(options) > MAX_OPTIONS:
            found.append(f"more than {MAX_OPTIONS} options")
        for option in options:
            if len(_text(option.get("text"))) > MAX_OPTION_TEXT:
                found.append(f"option text longer than {MAX_OPTION_TEXT}")
            if len(str(option.get("value", ""))) > MAX_OPTION_VALUE:
                found.append(f"option value longer than {MAX_OPTION_VALUE}")
    confirm = element.get("confirm")
    if isinstance(confirm, dict):
        if len(_text(confirm.get("title"))) > MAX_CONFIRM_TITLE:
            found.append(f"confirm title longer than {MAX_CONFIRM_TITLE}")
        if len(_text(confirm.get("text"))) > MAX_CONFIRM_TEXT:
            found.append(f"confirm text longer than {MAX_CONFIRM_TEXT}")
    return found
