"""`ftbot demo --quick`: the whole loop on embedded defaults, as a newcomer runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_demo_runs_the_whole_loop_without_slack_or_redis(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_URL", "REDIS_URL"))}
    env["REDIS_URL"] = "redis://127.0.0.1:1/0"  # nothing listens there: the demo must not need Redis
    out = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "demo", "--quick", "--out", str(out)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads((out / "figures.json").read_text())
    assert figures["recommendation"] == "Fine-tuning"
    assert figures["production"] == 1  # promoted v1, promoted v2, rolled back
    assert 0 < figures["alpha"] < 1
    assert figures["conflicts_settled"] > 0 and figures["open_conflicts"] == 0  # the owner settled each
    assert figures["v1"]["accuracy"] > figures["v1"]["base_accuracy"]
    for name in (
        "status.blocks.json",
        "eval_summary_v1.blocks.json",
        "eval_summary_v2.blocks.json",
        "promote_v2.blocks.json",
        "rollback_v1.blocks.json",
    ):
        payload = json.loads((out / name).read_text())
        assert payload["blocks"], name
    assert (out / "eval_chart_v1.png").read_bytes().startswith(b"\x89PNG")
    manifest = json.loads((out / "data" / "deploy" / "ticket-router.json").read_text())
    assert manifest["version"] == 1 and manifest["action"] == "rollback"
    assert "Recommendation: Fine-tuning" in done.stdout
