"""Evaluation's decisions: k-shot prompts from the train split, the best baseline, the verdict, the
plain-words advice, and a summary whose numbers are written for people."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from runner.core.db import session_scope
from runner.core.models import ModelVersion, Project, VersionStatus
from runner.data import projects, snapshots
from runner.ml import baselines, evaluation, metrics
from runner.slack import payloads
from tests.training_support import seed_project


def test_k_shot_prompts_show_train_examples_only_and_the_same_ones_every_time(engine) -> None:
    seed_project(engine, n=96)
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        snapshot, _ = snapshots.build_snapshot(session, project)
        version = ModelVersion(
            project_id=project.id or 0, number=1, snapshot_id=snapshot.id, base_model="", artifact_path=""
        )
        data = evaluation.load_splits(session, version)
        rows = snapshots.snapshot_rows(session, snapshot.id)
    train_texts = {r.input_text for r in rows if r.split == "train"}
    eval_texts = {r.input_text for r in rows if r.split == "eval"}
    assert data.samples and len(data.samples) == len(eval_texts)

    shots, prompts = evaluation.k_shot_prompts(data)
    assert {s.text for s in shots} <= train_texts and not {s.text for s in shots} & eval_texts
    assert sorted(s.answer for s in shots) == sorted(data.labels * baselines.FEW_SHOT_PER_LABEL)
    assert evaluation.k_shot_prompts(data) == (shots, prompts)  # deterministic
    for sample, prompt in zip(data.samples, prompts, strict=True):
        assert prompt[0] == sample.conversation[0] and prompt[-1] == sample.conversation[-1]
        shown = [m["content"] for m in prompt[1:-1] if m["role"] == "user"]
        assert shown == [s.text for s in shots]


def test_extraction_k_shot_prompts_show_a_few_solved_train_examples() -> None:
    train = [baselines.Solved(f"order {i} for alice", json.dumps({"order": str(i)})) for i in range(10)]
    samples = [
        evaluation.Sample(
            conversation=[{"role": "system", "content": "extract"}, {"role": "user", "content": f"held {i}"}],
            reference="{}",
        )
        for i in range(4)
    ]
    project = Project(name="orders", task_type="extraction", channel_id="C1", owner_id="U1")
    data = evaluation.EvalData(
        project=project, task_type="extraction", samples=samples, train=train, labels=[]
    )
    shots, prompts = evaluation.k_shot_prompts(data)
    assert len(shots) == baselines.FEW_SHOT_EXAMPLES and set(shots) <= set(train)
    # The baselines' fingerprint: what their answers depend on, and nothing else.
    key = evaluation.baselines_key(data, "smollm2-135m", True)
    assert key == evaluation.baselines_key(data, "smollm2-135m", True)
    assert key != evaluation.baselines_key(data, "smollm2-360m", True)
    assert key != evaluation.baselines_key(data, "smollm2-135m", False)
    fewer = evaluation.EvalData(
        project=project, task_type="extraction", samples=samples[1:], train=train, labels=[]
    )
    assert key != evaluation.baselines_key(fewer, "smollm2-135m", True)
    other_train = [*train[:-1], baselines.Solved("order 9 for bob", json.dumps({"order": "9"}))]
    retrained = evaluation.EvalData(
        project=project, task_type="extraction", samples=samples, train=other_train, labels=[]
    )
    assert key != evaluation.baselines_key(retrained, "smollm2-135m", True)
    assert all(len(p) == 2 + 2 * len(shots) for p in prompts)
    assert evaluation.k_shot_prompts(data) == (shots, prompts)
    empty = evaluation.EvalData(project=project, task_type="extraction", samples=samples, train=[], labels=[])
    assert evaluation.k_shot_prompts(empty) == ([], [])  # no train split: no k-shot baseline


def system(headline: float, per_example: list[float], **extra: Any) -> dict[str, Any]:
    return {"headline": headline, "per_example": per_example, "schema_compliance": 1.0, **extra}


def test_the_verdict_compares_with_the_best_prompted_baseline() -> None:
    candidate = system(0.9, [1.0] * 9 + [0.0], headline_name="accuracy", per_label={})
    systems = {
        "base": system(0.1, [1.0] + [0.0] * 9),
        "base_k_shot": system(0.8, [1.0] * 8 + [0.0] * 2),
        "classical": system(0.95, [1.0] * 10),  # advice only: not a verdict reference
        "production": None,
        "candidate": candidate,
    }
    best = evaluation.best_baseline(systems)
    assert best == "base_k_shot"
    base_k_shot = systems["base_k_shot"]
    assert base_k_shot is not None
    against_best = metrics.paired_bootstrap(base_k_shot["per_example"], candidate["per_example"])
    refused = evaluation.verdict(candidate, [("the best baseline", base_k_shot, against_best)], [])
    assert not refused["promote"] and "not better than the best baseline" in refused["reason"]
    # Against the zero-shot baseline alone the same candidate would have been recommended.
    base = systems["base"]
    assert base is not None
    against_base = metrics.paired_bootstrap(base["per_example"], candidate["per_example"])
    assert evaluation.verdict(candidate, [("zero-shot", base, against_base)], [])["promote"]
    # A candidate whose whole interval lies below the baseline's is called worse, not "not better".
    weak = system(0.2, [1.0] * 2 + [0.0] * 8, headline_name="accuracy", per_label={})
    behind = metrics.paired_bootstrap(base_k_shot["per_example"], weak["per_example"])
    assert behind.ci_high < 0
    worse = evaluation.verdict(weak, [("the best baseline", base_k_shot, behind)], [])
    assert not worse["promote"] and worse["reason"].startswith(
        "accuracy is worse than the best baseline (Δ -0.60"
    )
    # A tie between the prompted baselines goes to the simpler prompt.
    assert evaluation.best_baseline({**systems, "base_k_shot": system(0.1, [0.0] * 10)}) == "base"


def test_a_small_classifier_within_the_candidates_interval_is_said_in_plain_words() -> None:
    candidate = system(0.9, [1.0] * 9 + [0.0], ci=(0.7, 1.0))
    assert evaluation.small_classifier_does_as_well(system(0.75, []), candidate)
    assert not evaluation.small_classifier_does_as_well(system(0.6, []), candidate)
    assert not evaluation.small_classifier_does_as_well(None, candidate)

    report = fake_report(classical_headline=0.75, does_as_well=True)
    shown = json.dumps(summary(report), ensure_ascii=False)
    assert "a small classifier does as well; you may not need a fine-tuned LLM" in shown
    report = fake_report(classical_headline=0.6, does_as_well=False)
    assert "small classifier" not in json.dumps(summary(report))


def fake_report(*, classical_headline: float, does_as_well: bool) -> dict[str, Any]:
    def row(title: str, headline: float, **extra: Any) -> dict[str, Any]:
        return {
            "title": title,
            "headline": headline,
            "ci": (headline - 0.123456789, min(1.0, headline + 0.0987654321)),
            "tokens": {"mean_total_tokens": 77.44565217391305},
            "latency": {"p95": 0.5067279590000453},
            **extra,
        }

    return {
        "task_type": "classification",
        "headline_name": "accuracy",
        "n_examples": 40,
        "systems": {
            "base": row("Base + instructions, zero-shot", 0.3, method="label choice", unparsable=0.0),
            "base_k_shot": row("Base + instructions, 2 examples per label", 0.4, method="label choice"),
            "classical": {**row("TF-IDF + logistic regression", classical_headline), "tokens": None},
            "production": None,
            "candidate": row("Candidate", 0.9, method="generation", unparsable=0.025),
        },
        "best_baseline": "base_k_shot",
        "comparisons": {
            "base_k_shot": {"mean_diff": 0.5, "ci_low": 0.33333333, "ci_high": 0.6666666, "better": True}
        },
        "regressions": [],
        "small_classifier_does_as_well": does_as_well,
        "verdict": {"promote": True, "reason": "accuracy beats the best baseline"},
        "production_revision": 0,
    }


def summary(report: dict[str, Any]) -> dict[str, Any]:
    project = Project(id=1, name="ticket-router", task_type="classification", channel_id="C1", owner_id="U1")
    version = ModelVersion(
        project_id=1,
        number=3,
        snapshot_id="s",
        base_model="b",
        artifact_path="a",
        status=VersionStatus.CANDIDATE,
    )
    return payloads.eval_summary(project, version, report)


def test_the_summary_rounds_numbers_for_people() -> None:
    payload = summary(fake_report(classical_headline=0.6, does_as_well=False))
    shown = json.dumps(payload, ensure_ascii=False)
    assert not re.search(r"\d\.\d{3,}", shown)
    assert "77 tokens" in shown and "0.51 s" in shown
    assert "*Candidate v3*\\n0.90 [0.78–1.00] · _2% unparsable_" in shown
    assert "0.40 [0.28–0.50] · _best baseline_" in shown
    assert "vs best baseline +0.50 [+0.33 to +0.67]" in shown
    assert payload["text"].startswith(
        "Evaluation of ticket-router v3: accuracy 0.90 [0.78–1.00] (best baseline 0.40"
    )


@pytest.mark.parametrize(
    ("value", "shown"), [(0.5067279590000453, "0.51 s"), (0.004, "<0.01 s"), (3.25, "3.2 s"), (41.7, "42 s")]
)
def test_seconds_for_people(value: float, shown: str) -> None:
    assert payloads.seconds(value) == shown
