"""Every template renders valid Block Kit within Slack's limits, and matches its golden file.

Set UPDATE_GOLDEN=1 to rewrite the golden files after an intended change (and review the diff).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runner.core.exceptions import TemplateError
from runner.slack import blockkit
from runner.slack.render import render, template_dir
from tests.template_samples import SAMPLES

GOLDEN = Path(__file__).parent / "golden"


def test_every_template_has_samples():
    # Every message/view template; partials start with an underscore.
    names = {p.name for p in template_dir().glob("*.json.j2") if not p.name.startswith("_")}
    assert names == set(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_template_renders_within_limits_and_matches_golden(name):
    surface = {
        "project_modal.json.j2": "modal",
        "add_to_dataset_modal.json.j2": "modal",
        "home.json.j2": "home",
    }
    kind = surface.get(name, "message")
    rendered = [render(name, kind, **context) for context in SAMPLES[name]]
    for payload in rendered:
        assert kind != "message" or payload["text"], "every message carries fallback text"
        assert blockkit.problems(payload, kind) == []
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
