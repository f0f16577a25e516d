"""The acceptance-drop alert's chart (matplotlib, on a worker): acceptance review by review with its
Wilson band against the offline accuracy, and the CUSUM statistic against its threshold.

Drawn from the evidence the alert stored when it was raised (`runner.registry.pilot.drift_evidence`),
so the chart shows what the alert said, whatever reviews came after. Like the evaluation chart
(`runner.ml.evaluation.draw_chart`) it needs the ``train`` extra; the bot never draws it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from runner.data import acceptance


def draw_acceptance_chart(out: Path, evidence: dict[str, Any], *, title: str) -> Path:
    """Write the chart of an acceptance-drop alert's `evidence` to `out` (a PNG, renamed into place).

    Top: the acceptance rate after each review with its 95% Wilson band, the version's offline eval
    accuracy (the acceptance expected, p0), the drop the test looks for (p1) and the previous version's
    rate. Bottom: the CUSUM statistic with the alarm threshold; no alarm before the minimum reviews.

    Raises:
        KeyError: the evidence lacks the review series (an alert raised before charts existed).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [bool(ok) for ok in evidence["series"]]
    path = acceptance.trajectory(series, p0=evidence["p0"], p1=evidence["p1"])
    reviews = list(range(1, len(series) + 1))
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(8, 6), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    top.fill_between(reviews, path.low, path.high, step="mid", alpha=0.25, label="95% Wilson interval")
    top.plot(reviews, path.rate, drawstyle="steps-mid", marker="o", markersize=3, label="acceptance so far")
    if evidence.get("baseline") is not None:
        top.axhline(evidence["baseline"], color="tab:green", linestyle="--", label="offline eval accuracy")
    else:
        top.axhline(evidence["p0"], color="tab:green", linestyle="--", label="acceptance expected")
    top.axhline(evidence["p1"], color="tab:red", linestyle=":", label="drop tested for")
    previous = evidence.get("previous") or {}
    if previous.get("reviewed"):
        top.axhline(
            previous["rate"], color="tab:gray", linestyle="-.", label=f"v{previous['version']} before it"
        )
    top.set(title=title, ylabel="accepted", ylim=(-0.02, 1.02))
    top.legend(loc="best", fontsize="small")
    bottom.plot(
        reviews,
        path.statistic,
        drawstyle="steps-mid",
        marker="o",
        markersize=3,
        color="tab:purple",
        label="CUSUM S",
    )
    bottom.axhline(evidence["threshold"], color="tab:red", linestyle="--", label="alarm threshold")
    bottom.axvspan(0.5, evidence["min_reviews"] - 0.5, color="tab:gray", alpha=0.15, label="too few reviews")
    if evidence.get("alarm_at"):
        for axis in (top, bottom):
            axis.axvline(evidence["alarm_at"], color="tab:red", alpha=0.5)
    highest = max([evidence["threshold"], *path.statistic])
    bottom.set(xlabel="reviewed suggestions, oldest first", ylabel="S", ylim=(0, highest * 1.15))
    bottom.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=out.parent, prefix=".chart-", suffix=".png")
    os.close(handle)
    try:
        figure.savefig(temporary, dpi=100)
        os.replace(temporary, out)
    finally:
        plt.close(figure)
        if os.path.exists(temporary):
            os.unlink(temporary)
    return out
