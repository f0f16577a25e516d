"""Evaluate a candidate version on its snapshot's held-out split, against the base model and production.

Three systems answer the same held-out examples: the base model with the project's instructions
(the prompt-engineering baseline), the version in production (if any), and the candidate. Metrics
depend on the task type (`runner.ml.metrics`); the headline metric gets a bootstrap 95% interval and
a paired comparison against production (or the base), so "better" means better beyond noise. The
report is stored on the version, drawn as a chart and posted to the project thread with Promote /
Rollback / Discard buttons. torch is imported only inside the functions that generate.
"""

from __future__ import annotations

import gc
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from runner.core import basemodels
from runner.core.config import Settings
from runner.core.db import session_scope
from runner.core.models import (
    ModelVersion,
    Project,
    SnapshotExample,
    TaskType,
    utcnow,
)
from runner.data import exporting, snapshots
from runner.ml import metrics
from runner.registry import versions

log = logging.getLogger(__name__)

# A regression worth flagging: a label whose F1 drops by this much against the reference.
REGRESSION_DROP = 0.05
MAX_NEW_TOKENS = {"classification": 16, "extraction": 256, "generation": 256}


@dataclass(frozen=True)
class Sample:
    """One held-out example, as the systems see it."""

    conversation: list[Mapping[str, str]]
    reference: str


def held_out(session: Session, version: ModelVersion) -> tuple[Project, str, str, list[Sample], list[str]]:
    """The project, task type, instructions, eval samples and label set of `version`'s snapshot."""
    project = session.get(Project, version.project_id)
    assert project is not None
    snapshot = snapshots.get_snapshot(session, project, version.snapshot_id)
    frozen = snapshot.stats
    task_type = str(frozen.get("task_type", project.task_type))
    instructions = str(frozen.get("instructions", project.instructions))
    rows: list[SnapshotExample] = [
        r for r in snapshots.snapshot_rows(session, snapshot.id) if r.split == "eval"
    ]
    samples = []
    for row in rows:
        record = exporting.chat_record(task_type, instructions, row, redact=True)
        messages = record["messages"]
        samples.append(Sample(conversation=messages[:-1], reference=messages[-1]["content"]))
    labels = sorted(set(frozen.get("legend", {}).values())) if task_type == TaskType.CLASSIFICATION else []
    return project, task_type, instructions, samples, labels


def normalise_label(text: str, labels: Sequence[str]) -> str | None:
    """The label a classifier's answer names, or None when it names none (or several)."""
    cleaned = re.sub(r"[^\w\s-]", " ", text.lower()).split()
    exact = " ".join(cleaned)
    if exact in labels:
        return exact
    named = [label for label in labels if label in cleaned]
    return named[0] if len(named) == 1 else None


def _generate(
    base_model: str,
    adapter: str | None,
    quantize: bool,
    samples: Sequence[Sample],
    task_type: str,
    batch_size: int,
) -> list[Any]:
    from runner.ml import inference

    model, tokenizer = inference.load_for_inference(
        base_model, Path(adapter) if adapter else None, quantize=quantize
    )
    try:
        return inference.generate(
            model,
            tokenizer,
            [s.conversation for s in samples],
            max_new_tokens=MAX_NEW_TOKENS[task_type],
            batch_size=batch_size,
        )
    finally:
        del model
        gc.collect()


def score(
    task_type: str,
    samples: Sequence[Sample],
    outputs: Sequence[Any],
    labels: Sequence[str],
    fields: Sequence[str],
) -> dict[str, Any]:
    """Metrics of one system's outputs; ``per_example`` holds the scores the bootstrap resamples."""
    texts = [o.text for o in outputs]
    common = {
        "empty_or_refused": metrics.empty_or_refused(texts),
        "latency": metrics.latency_summary([o.latency_s for o in outputs]),
        "tokens": metrics.token_cost([o.prompt_tokens for o in outputs], [o.output_tokens for o in outputs]),
        "examples": [t[:300] for t in texts[:5]],
    }
    if task_type == TaskType.CLASSIFICATION:
        predicted = [normalise_label(t, labels) for t in texts]
        gold = [s.reference for s in samples]
        report = metrics.classification_report(gold, predicted, labels)
        per_example = [1.0 if p == g else 0.0 for p, g in zip(predicted, gold, strict=True)]
        return {
            **common,
            "headline_name": "accuracy",
            "headline": report.accuracy,
            "per_example": per_example,
            "predicted": predicted,
            "macro_f1": report.macro_f1,
            "schema_compliance": report.schema_compliance,
            "per_label": {k: v.__dict__ for k, v in report.per_label.items()},
            "confusion": report.confusion,
        }
    if task_type == TaskType.EXTRACTION:
        gold_objects = [json.loads(s.reference) for s in samples]
        report_x = metrics.extraction_report(gold_objects, texts, fields)
        per_example = [
            metrics.extraction_report([g], [t], fields).f1 for g, t in zip(gold_objects, texts, strict=True)
        ]
        return {
            **common,
            "headline_name": "field F1",
            "headline": report_x.f1,
            "per_example": per_example,
            "schema_compliance": report_x.json_validity,
            "precision": report_x.precision,
            "recall": report_x.recall,
            "exact_match": report_x.exact_match,
            "per_field_f1": report_x.per_field_f1,
        }
    references = [s.reference for s in samples]
    return {
        **common,
        "headline_name": "chrF",
        "headline": metrics.corpus_chrf(texts, references) / 100,
        "per_example": [metrics.chrf(t, r) / 100 for t, r in zip(texts, references, strict=True)],
        "schema_compliance": metrics.format_compliance(texts, max_chars=4 * max(len(r) for r in references)),
    }


def verdict(
    candidate: dict[str, Any],
    reference: dict[str, Any],
    reference_name: str,
    comparison: metrics.PairedComparison,
    regressed: list[tuple[str, float, float]],
) -> dict[str, Any]:
    """Whether to promote, and why, in one sentence a reviewer can check against the numbers."""
    name = candidate["headline_name"]
    if not comparison.better:
        why = (
            f"{name} is not better than {reference_name} beyond noise "
            f"(Δ {comparison.mean_diff:+.3f}, 95% CI {comparison.ci_low:+.3f} to {comparison.ci_high:+.3f})"
        )
        return {"promote": False, "reason": why}
    if regressed:
        labels = ", ".join(f"{label} ({before:.2f}→{after:.2f})" for label, before, after in regressed)
        return {"promote": False, "reason": f"{name} improves, but these labels regress: {labels}"}
    if candidate["schema_compliance"] + 1e-9 < reference["schema_compliance"]:
        return {"promote": False, "reason": "more outputs fall outside the expected format than before"}
    return {
        "promote": True,
        "reason": f"{name} beats {reference_name} by {comparison.mean_diff:+.3f} "
        f"(95% CI {comparison.ci_low:+.3f} to {comparison.ci_high:+.3f}) with no label regressing",
    }


def evaluate_version(
    settings: Settings, engine: Engine, version_id: int, *, batch_size: int = 16
) -> dict[str, Any]:
    """Evaluate version `version_id` (see the module docstring) and store the report on it.

    Returns:
        The report (also in ``ModelVersion.evaluation``).

    Raises:
        ValueError: the snapshot has no held-out example.
    """
    with session_scope(engine) as session:
        version = session.get(ModelVersion, version_id)
        assert version is not None
        project, task_type, _instructions, samples, labels = held_out(session, version)
        fields = list(project.fields)
        prod = versions.production(session, project)
        production = prod if prod is not None and prod.id != version.id else None
        production_revision = versions.alias(session, project).revision
        config = version.config
        quantize = bool(config.get("quantize", True))
        prod_info = (
            (
                production.number,
                production.base_model,
                production.artifact_path,
                bool(production.config.get("quantize", True)),
            )
            if production
            else None
        )
        base_model, artifact = version.base_model, version.artifact_path
    base_model = basemodels.resolve(base_model, settings.ftbot_models_dir)
    if prod_info is not None:
        prod_info = (
            prod_info[0],
            basemodels.resolve(prod_info[1], settings.ftbot_models_dir),
            *prod_info[2:],
        )
    if not samples:
        raise ValueError("The snapshot has no held-out example to evaluate on.")
    systems: dict[str, dict[str, Any] | None] = {
        "base": score(
            task_type,
            samples,
            _generate(base_model, None, quantize, samples, task_type, batch_size),
            labels,
            fields,
        ),
        "production": None,
        "candidate": score(
            task_type,
            samples,
            _generate(base_model, artifact, quantize, samples, task_type, batch_size),
            labels,
            fields,
        ),
    }
    if prod_info is not None:
        number, prod_base, prod_artifact, prod_quantize = prod_info
        systems["production"] = {
            "version": number,
            **score(
                task_type,
                samples,
                _generate(prod_base, prod_artifact, prod_quantize, samples, task_type, batch_size),
                labels,
                fields,
            ),
        }
    candidate = systems["candidate"]
    assert candidate is not None
    for system in systems.values():
        if system is not None:
            system["ci"] = metrics.bootstrap_ci(system["per_example"])
    reference_name = "production" if systems["production"] is not None else "base"
    reference = systems[reference_name]
    assert reference is not None
    comparison = metrics.paired_bootstrap(reference["per_example"], candidate["per_example"])
    regressed: list[tuple[str, float, float]] = []
    if task_type == TaskType.CLASSIFICATION:
        gold = [s.reference for s in samples]

        def report_of(system: dict[str, Any]) -> metrics.ClassificationReport:
            return metrics.classification_report(gold, system["predicted"], labels)

        regressed = metrics.regressions(report_of(reference), report_of(candidate), min_drop=REGRESSION_DROP)
    report = {
        "version_id": version_id,
        "task_type": task_type,
        "n_examples": len(samples),
        "headline_name": candidate["headline_name"],
        "systems": systems,
        "candidate": {"headline": candidate["headline"]},
        "reference": reference_name,
        "comparison": comparison.__dict__,
        "regressions": regressed,
        "verdict": verdict(candidate, reference, reference_name, comparison, regressed),
        "evaluated_at": utcnow().isoformat(),
        # The production move compared against: the summary's buttons act only while it is the latest.
        "production_revision": production_revision,
    }
    report["chart"] = str(draw_chart(Path(artifact), report))
    with session_scope(engine) as session:
        stored = session.get(ModelVersion, version_id)
        assert stored is not None
        stored.evaluation = report
        session.add(stored)
    return report


def draw_chart(folder: Path, report: dict[str, Any]) -> Path:
    """A PNG: the training loss curve, and per-label F1 (or the headline) for each system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics_file = folder / "metrics.json"
    trained = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    curve = trained.get("loss_curve") or []
    if curve:
        left.plot([s for s, _ in curve], [v for _, v in curve], label="train loss")
    evals = trained.get("eval_losses") or []
    if evals:
        left.plot([s for s, _ in evals], [v for _, v in evals], marker="o", label="eval loss")
    left.set(title="Loss", xlabel="step")
    left.legend()
    systems = {k: v for k, v in report["systems"].items() if v is not None}
    if report["task_type"] == TaskType.CLASSIFICATION:
        labels = sorted(report["systems"]["candidate"]["per_label"])
        width = 0.8 / len(systems)
        for offset, (name, system) in enumerate(systems.items()):
            positions = [i + offset * width for i in range(len(labels))]
            right.bar(positions, [system["per_label"][lab]["f1"] for lab in labels], width, label=name)
        right.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))], labels, rotation=30)
        right.set(title="F1 per label", ylim=(0, 1.05))
        right.legend()
    else:
        right.bar(list(systems), [s["headline"] for s in systems.values()])
        right.set(title=report["headline_name"], ylim=(0, 1.05))
    figure.tight_layout()
    out = folder / "eval" / "summary.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out
