"""Every template renders valid Block Kit within Slack's limits, and matches its golden file.

Each rendered payload is checked twice: by slack_sdk's own models (``Block.parse`` and ``View``,
``validate_json``, and a round trip that must give the payload back unchanged, so that no field is
unknown to them) and by `runner.slack.blockkit`, which checks the documented limits the models do
not. Both run on the ordinary samples and on the largest contexts the product allows (``STRESS``).

Set UPDATE_GOLDEN=1 to rewrite the golden files after an intended change (and review the diff).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from runner.core.exceptions import TemplateError
from runner.slack import blockkit
from runner.slack.render import render, template_dir
from tests.template_samples import SAMPLES, STRESS

GOLDEN = Path(__file__).parent / "golden"
SURFACE = {"project_modal.json.j2": "modal", "add_to_dataset_modal.json.j2": "modal", "home.json.j2": "home"}


def sdk_problems(payload: dict[str, Any], surface: str = "message") -> list[str]:
    """What slack_sdk's Block Kit models say about `payload` (empty: nothing)."""
    found = []
    try:
        if surface == "message":
            for block in payload["blocks"]:
                parsed = Block.parse(block)
                assert parsed is not None, f"slack_sdk does not know block type {block.get('type')!r}"
                parsed.validate_json()
                assert parsed.to_dict() == block, f"slack_sdk reads {block!r} as {parsed.to_dict()!r}"
        else:
            view = View(**payload)
            view.validate_json()
            assert view.to_dict() == payload, f"slack_sdk reads the view differently: {view.to_dict()!r}"
    except Exception as exc:
        found.append(f"{type(exc).__name__}: {exc}")
    return found


def check(payload: dict[str, Any], surface: str = "message") -> None:
    assert surface != "message" or payload["text"], "every message carries fallback text"
    assert sdk_problems(payload, surface) == []
    assert blockkit.problems(payload, surface) == []


def test_every_template_has_samples_and_a_largest_case():
    # Every message/view template; partials start with an underscore.
    names = {p.name for p in template_dir().glob("*.json.j2") if not p.name.startswith("_")}
    assert names == set(SAMPLES) == set(STRESS)


@pytest.mark.parametrize("name", sorted(STRESS))
def test_template_holds_the_largest_context_the_product_allows(name):
    for context in STRESS[name]:
        check(render(name, SURFACE.get(name, "message"), **context), SURFACE.get(name, "message"))


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_template_renders_within_limits_and_matches_golden(name):
    kind = SURFACE.get(name, "message")
    rendered = [render(name, kind, **context) for context in SAMPLES[name]]
    for payload in rendered:
        check(payload, kind)
    golden = GOLDEN / (name.removesuffix(".json.j2") + ".json")
    text = json.dumps(rendered, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert golden.exists(), f"no golden file for {name}: run with UPDATE_GOLDEN=1"
    assert text == golden.read_text()


def test_limits_are_enforced_at_render_time(tmp_path, monkeypatch):
    too_many = {"text": "t", "blocks": [{"type": "divider"}] * 51}
    assert "51 blocks > 50" in blockkit.problems(too_many)[0]
    assert blockkit.problems(too_many, surface="modal") == []
    long_button = {
        "text": "t",
        "blocks": [
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "b" * 76},
                        "action_id": "a",
                        "value": "v" * 2001,
                        "confirm": {
                            "title": {"type": "plain_text", "text": "t" * 101},
                            "text": {"type": "mrkdwn", "text": "c" * 301},
                        },
                    }
                ],
            }
        ],
    }
    found = " ".join(blockkit.problems(long_button))
    for limit in (
        "button text longer than 75",
        "button value longer than 2000",
        "confirm title longer than 100",
        "confirm text longer than 300",
    ):
        assert limit in found
    assert (
        "header longer than 150"
        in blockkit.problems(
            {"text": "t", "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]}
        )[0]
    )
    assert (
        "longer than 255"
        in blockkit.problems(
            {
                "text": "t",
                "blocks": [
                    {"type": "section", "block_id": "b" * 256, "text": {"type": "mrkdwn", "text": "s"}}
                ],
            }
        )[0]
    )
    assert (
        "text longer than 3000"
        in blockkit.problems(
            {"text": "t", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "s" * 3001}}]}
        )[0]
    )


def test_a_missing_variable_is_an_error_naming_the_template():
    with pytest.raises(TemplateError, match="notice.json.j2"):
        render("notice.json.j2")


def test_notices_escape_what_people_typed_and_keep_ftbots_own_mentions():
    from runner.slack import payloads

    text = payloads.notice("Only <@UOWNER> may settle `<!here> urgent` in <#CDATA|data> & <#C1>; <@W1|x>")[
        "text"
    ]
    assert text.startswith("Only <@UOWNER> may settle `&lt;!here&gt; urgent` in <#CDATA|data> &amp; <#C1>")
    assert text.endswith("&lt;@W1|x&gt;")  # a user mention with a label is not one ftbot writes
