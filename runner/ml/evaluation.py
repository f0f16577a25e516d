"""Evaluate a candidate version on its snapshot's held-out split, against the baselines and production.

Every system answers the same held-out examples:

* **Prompted baselines**: the base model with the project's instructions, zero-shot (``base``) and
  with k solved examples from the snapshot's *train* split in the prompt (``base_k_shot``,
  `runner.ml.baselines`). For classification they choose among the labels by log-likelihood
  (`runner.ml.inference.choose_labels`): no free text is parsed, so a base model that knows the
  answer but words it differently is not scored as wrong. For extraction and generation they
  generate freely.
* **Classical baseline** (classification only): TF-IDF + logistic regression trained on the train
  split (``classical``).
* **Production** (if any) and the **candidate**: free generation, as serving answers; the share of
  answers that name no label (or are not JSON) is reported as ``unparsable``.

Metrics depend on the task type (`runner.ml.metrics`); every system's headline metric gets a
bootstrap 95% interval. The verdict compares the candidate, paired on the same examples, with the
best prompted baseline and with production, so "better" means better beyond noise. The classical
baseline is advice, not a promote criterion (ftbot serves LLM adapters): when its score reaches the
candidate's interval the summary says that a small classifier does as well. The report is stored on
the version, drawn as a chart and posted to the project thread with Promote / Rollback / Discard
buttons. torch is imported only inside the functions that run a model.

The baselines' answers depend only on their inputs (the base model, quantization, prompts, labels
and the train split), never on the candidate: a later version evaluated on the same inputs (the
same snapshot, the same base model) reuses the earlier version's baseline rows (``reused_from``)
instead of running the base model again. `baselines_key` fingerprints those inputs.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from runner.core import basemodels
from runner.core.config import Settings
from runner.core.db import session_scope
from runner.core.models import (
    ModelVersion,
    Project,
    SnapshotExample,
    Split,
    TaskType,
    utcnow,
)
from runner.data import exporting, snapshots, textnorm
from runner.ml import baselines, metrics
from runner.registry import versions

log = logging.getLogger(__name__)

# A regression worth flagging: a label whose F1 drops by this much against the reference.
REGRESSION_DROP = 0.05
MAX_NEW_TOKENS = {"classification": 16, "extraction": 256, "generation": 256}
# The k-shot examples are drawn once per snapshot with this seed, so every version of a project
# is compared with the same prompt.
FEW_SHOT_SEED = 0
PROMPTED = ("base", "base_k_shot")
"""The prompted baselines, in the order a tie between them is broken (the simpler one wins)."""


@dataclass(frozen=True)
class Sample:
    """One held-out example, as the systems see it."""

    conversation: list[Mapping[str, str]]
    reference: str


@dataclass(frozen=True)
class Answer:
    """An answer of a system that runs no language model (the classical baseline)."""

    text: str
    latency_s: float
    prompt_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True)
class EvalData:
    """What a snapshot gives an evaluation: its task, held-out samples, train examples and labels."""

    project: Project
    task_type: str
    samples: list[Sample]
    """The eval split, as prompts and reference answers."""
    train: list[baselines.Solved]
    """The train split: the only source of k-shot examples and of the classical baseline's data."""
    labels: list[str]
    """The label set (classification), else empty."""


def load_splits(session: Session, version: ModelVersion) -> EvalData:
    """The project, task type, held-out samples, train examples and labels of `version`'s snapshot.

    Args:
        session: An open session.
        version: The version evaluated; its snapshot is read.

    Returns:
        An :class:`EvalData`; prompts as training formatted them (instructions, redaction).
    """
    project = session.get(Project, version.project_id)
    assert project is not None
    snapshot = snapshots.get_snapshot(session, project, version.snapshot_id)
    frozen = snapshot.stats
    task_type = str(frozen.get("task_type", project.task_type))
    instructions = str(frozen.get("instructions", project.instructions))
    rows: list[SnapshotExample] = snapshots.snapshot_rows(session, snapshot.id)
    samples, train = [], []
    for row in rows:
        messages = exporting.chat_record(task_type, instructions, row, redact=True)["messages"]
        if row.split == Split.EVAL:
            samples.append(Sample(conversation=messages[:-1], reference=messages[-1]["content"]))
        else:
            train.append(baselines.Solved(text=messages[-2]["content"], answer=messages[-1]["content"]))
    labels = sorted(set(frozen.get("legend", {}).values())) if task_type == TaskType.CLASSIFICATION else []
    return EvalData(project=project, task_type=task_type, samples=samples, train=train, labels=labels)


def k_shot_prompts(
    data: EvalData, *, seed: int = FEW_SHOT_SEED
) -> tuple[list[baselines.Solved], list[list[dict[str, str]]]]:
    """The k-shot baseline's prompts: the same solved train examples before every held-out question.

    Args:
        data: From :func:`load_splits`.
        seed: Seed of the draw (:func:`runner.ml.baselines.few_shot_examples`).

    Returns:
        ``(examples, conversations)``: the examples shown (``FEW_SHOT_PER_LABEL`` per label for
        classification, ``FEW_SHOT_EXAMPLES`` otherwise; none when the train split is empty) and one
        prompt per held-out sample.
    """
    if not data.train:
        return [], []
    if data.task_type == TaskType.CLASSIFICATION:
        shots = baselines.few_shot_examples(data.train, per_label=baselines.FEW_SHOT_PER_LABEL, seed=seed)
    else:
        shots = baselines.few_shot_examples(data.train, total=baselines.FEW_SHOT_EXAMPLES, seed=seed)
    return shots, [baselines.with_examples(s.conversation, shots) for s in data.samples]


normalise_label = textnorm.label_named  # the rule predictions use too


@contextmanager
def _loaded(base_model: str, adapter: str | None, quantize: bool) -> Iterator[tuple[Any, Any]]:
    from runner.ml import inference

    model, tokenizer = inference.load_for_inference(
        base_model, Path(adapter) if adapter else None, quantize=quantize
    )
    try:
        yield model, tokenizer
    finally:
        del model
        gc.collect()


def _generate(
    loaded: tuple[Any, Any],
    conversations: Sequence[Sequence[Mapping[str, str]]],
    task_type: str,
    batch_size: int,
) -> list[Any]:
    from runner.ml import inference

    model, tokenizer = loaded
    return inference.generate(
        model, tokenizer, conversations, max_new_tokens=MAX_NEW_TOKENS[task_type], batch_size=batch_size
    )


def _choose(
    loaded: tuple[Any, Any], conversations: Sequence[Sequence[Mapping[str, str]]], labels: Sequence[str]
) -> list[Any]:
    from runner.ml import inference

    model, tokenizer = loaded
    return inference.choose_labels(model, tokenizer, conversations, labels)


def score(
    task_type: str,
    samples: Sequence[Sample],
    outputs: Sequence[Any],
    labels: Sequence[str],
    fields: Sequence[str],
) -> dict[str, Any]:
    """Metrics of one system's outputs; ``per_example`` holds the scores the bootstrap resamples.

    Args:
        task_type: A `TaskType` value.
        samples: The held-out samples.
        outputs: One answer per sample, with ``text``, ``latency_s``, ``prompt_tokens`` and
            ``output_tokens`` (the token counts None for a system without tokens).
        labels: The label set (classification).
        fields: The extraction fields.

    Returns:
        The system's entry of the report (``tokens`` None when the system has no tokens;
        ``unparsable`` None for generation tasks).
    """
    texts = [o.text for o in outputs]
    counted = all(o.prompt_tokens is not None for o in outputs)
    common = {
        "empty_or_refused": metrics.empty_or_refused(texts),
        "latency": metrics.latency_summary([o.latency_s for o in outputs]),
        "tokens": metrics.token_cost([o.prompt_tokens for o in outputs], [o.output_tokens for o in outputs])
        if counted
        else None,
        "examples": [t[:300] for t in texts[:5]],
        "unparsable": None,
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
            "unparsable": 1.0 - report.schema_compliance,
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
            "unparsable": 1.0 - report_x.json_validity,
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


def best_baseline(systems: Mapping[str, dict[str, Any] | None]) -> str:
    """The prompted baseline with the highest headline score (ties go to the simpler prompt).

    Args:
        systems: The report's systems; at least ``base`` is present.

    Returns:
        ``"base"`` or ``"base_k_shot"``.
    """
    present = [name for name in PROMPTED if systems.get(name) is not None]
    return max(present, key=lambda name: systems[name]["headline"])  # type: ignore[index]


def small_classifier_does_as_well(classical: Mapping[str, Any] | None, candidate: Mapping[str, Any]) -> bool:
    """Whether the classical baseline's score reaches the candidate's 95% interval (or beats it).

    Args:
        classical: The ``classical`` system of a report, or None when there is none.
        candidate: The ``candidate`` system (with its ``ci``).

    Returns:
        True when a team could serve the small classifier instead and lose nothing measurable.
    """
    return classical is not None and classical["headline"] >= candidate["ci"][0]


def verdict(
    candidate: dict[str, Any],
    references: Sequence[tuple[str, dict[str, Any], metrics.PairedComparison]],
    regressed: list[tuple[str, float, float]],
) -> dict[str, Any]:
    """Whether to promote, and why, in one sentence a reviewer can check against the numbers.

    Args:
        candidate: The candidate's system entry.
        references: ``(what it is called in the sentence, its system entry, the paired comparison of
            the candidate against it)``: the best prompted baseline, then production if any.
        regressed: Labels whose F1 dropped against the regression reference.

    Returns:
        ``{"promote": bool, "reason": str}``.
    """
    name = candidate["headline_name"]
    for reference_name, _, comparison in references:
        if not comparison.better:
            worse = comparison.ci_high < 0  # the whole interval below zero: worse beyond noise
            why = (
                f"{name} is {'worse than' if worse else 'not better than'} {reference_name}"
                f"{'' if worse else ' beyond noise'} (Δ {comparison.mean_diff:+.2f}, "
                f"95% CI {comparison.ci_low:+.2f} to {comparison.ci_high:+.2f})"
            )
            return {"promote": False, "reason": why}
    if regressed:
        labels = ", ".join(f"{label} ({before:.2f}→{after:.2f})" for label, before, after in regressed)
        return {"promote": False, "reason": f"{name} improves, but these labels regress: {labels}"}
    for _, reference, _ in references:
        # A label-choosing baseline always answers in format; only generating systems are compared.
        if (
            reference.get("method") == "generation"
            and candidate["schema_compliance"] + 1e-9 < reference["schema_compliance"]
        ):
            return {"promote": False, "reason": "more outputs fall outside the expected format than before"}
    beats = " and ".join(
        f"{reference_name} by {c.mean_diff:+.2f} (95% CI {c.ci_low:+.2f} to {c.ci_high:+.2f})"
        for reference_name, _, c in references
    )
    tail = " with no label regressing" if candidate.get("per_label") is not None else ""
    return {"promote": True, "reason": f"{name} beats {beats}{tail}"}


TITLES = {
    "base": "Base + instructions, zero-shot",
    "base_k_shot": "Base + instructions, {k}",
    "classical": "TF-IDF + logistic regression",
    "production": "Production v{version}",
    "candidate": "Candidate",
}


BASELINES = ("base", "base_k_shot", "classical")


def baselines_key(data: EvalData, base_model: str, quantize: bool) -> str:
    """A fingerprint of everything the baselines' answers depend on: equal keys, equal answers."""
    _, k_shot = k_shot_prompts(data)
    inputs = {
        "base_model": base_model,
        "quantize": quantize,
        "task_type": str(data.task_type),
        "labels": data.labels,
        "zero_shot": [s.conversation for s in data.samples],
        "references": [s.reference for s in data.samples],
        "k_shot": k_shot,
        "train": [(t.text, t.answer) for t in data.train],
        "few_shot_per_label": baselines.FEW_SHOT_PER_LABEL,
        "max_new_tokens": MAX_NEW_TOKENS,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def reusable_baselines(
    session: Session, version: ModelVersion, key: str
) -> dict[str, dict[str, Any] | None] | None:
    """The baseline rows of an earlier evaluation of the same project with the same inputs, or None."""
    earlier = session.exec(
        select(ModelVersion)
        .where(ModelVersion.project_id == version.project_id)
        .where(ModelVersion.snapshot_id == version.snapshot_id)
        .where(col(ModelVersion.id) != version.id)
        .order_by(col(ModelVersion.id).desc())
    ).all()
    for other in earlier:
        report = other.evaluation or {}
        if report.get("baselines_key") != key:
            continue
        systems = report.get("systems") or {}
        reused: dict[str, dict[str, Any] | None] = {}
        for name in BASELINES:
            row = systems.get(name)
            reused[name] = (
                None
                if row is None
                else {
                    **{k: v for k, v in row.items() if k not in ("ci", "title")},
                    "reused_from": row.get("reused_from") or other.number,
                }
            )
        return reused
    return None


def _baselines(
    data: EvalData, base_model: str, quantize: bool, batch_size: int, fields: Sequence[str]
) -> dict[str, dict[str, Any] | None]:
    """Run the prompted baselines (one model load) and, for classification, the classical one."""
    shots, k_shot = k_shot_prompts(data)
    zero_shot = [s.conversation for s in data.samples]
    classify = data.task_type == TaskType.CLASSIFICATION
    method = "label choice" if classify else "generation"
    with _loaded(base_model, None, quantize) as loaded:
        prompts = [("base", zero_shot)] + ([("base_k_shot", k_shot)] if shots else [])
        outputs = {
            name: _choose(loaded, conversations, data.labels)
            if classify
            else _generate(loaded, conversations, data.task_type, batch_size)
            for name, conversations in prompts
        }
    systems: dict[str, dict[str, Any] | None] = {"base": None, "base_k_shot": None, "classical": None}
    for name, answers in outputs.items():
        systems[name] = {
            "method": method,
            **score(data.task_type, data.samples, answers, data.labels, fields),
        }
    k_shot_system = systems["base_k_shot"]
    if k_shot_system is not None:
        k_shot_system["k_shot"] = {
            "examples": len(shots),
            "per_label": baselines.FEW_SHOT_PER_LABEL if classify else None,
        }
    if classify:
        fitted = baselines.tfidf_baseline(data.train, [s.conversation[-1]["content"] for s in data.samples])
        if fitted is not None:
            answers = [Answer(text=p, latency_s=fitted.predict_s) for p in fitted.predicted]
            systems["classical"] = {
                "method": "tf-idf",
                "fit_s": fitted.fit_s,
                **score(data.task_type, data.samples, answers, data.labels, fields),
            }
    return systems


def evaluate_version(
    settings: Settings, engine: Engine, version_id: int, *, batch_size: int = 16
) -> dict[str, Any]:
    """Evaluate version `version_id` (see the module docstring) and store the report on it.

    Args:
        settings: The worker's settings.
        engine: The database.
        version_id: The version to evaluate.
        batch_size: Conversations per ``generate`` call.

    Returns:
        The report (also in ``ModelVersion.evaluation``): ``systems`` (``base``, ``base_k_shot``,
        ``classical``, ``production``, ``candidate``; None where a system does not apply), the name of
        the ``best_baseline``, ``comparisons`` (paired, candidate against each other system),
        ``regressions``, ``small_classifier_does_as_well`` and the ``verdict``.

    Raises:
        ValueError: the snapshot has no held-out example.
    """
    with session_scope(engine) as session:
        version = session.get(ModelVersion, version_id)
        assert version is not None
        data = load_splits(session, version)
        fields = list(data.project.fields)
        prod = versions.production(session, data.project)
        production = prod if prod is not None and prod.id != version.id else None
        production_revision = versions.alias(session, data.project).revision
        quantize = bool(version.config.get("quantize", True))
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
    if not data.samples:
        raise ValueError("The snapshot has no held-out example to evaluate on.")
    task_type, samples, labels = data.task_type, data.samples, data.labels
    conversations = [s.conversation for s in samples]
    key = baselines_key(data, base_model, quantize)
    with session_scope(engine) as session:
        stored_version = session.get(ModelVersion, version_id)
        assert stored_version is not None
        reused = reusable_baselines(session, stored_version, key)
    systems = reused if reused is not None else _baselines(data, base_model, quantize, batch_size, fields)
    systems["production"] = None
    if prod_info is not None:
        number, prod_base, prod_artifact, prod_quantize = prod_info
        with _loaded(prod_base, prod_artifact, prod_quantize) as loaded:
            answers = _generate(loaded, conversations, task_type, batch_size)
        systems["production"] = {
            "version": number,
            "method": "generation",
            **score(task_type, samples, answers, labels, fields),
        }
    with _loaded(base_model, artifact, quantize) as loaded:
        answers = _generate(loaded, conversations, task_type, batch_size)
    candidate = {"method": "generation", **score(task_type, samples, answers, labels, fields)}
    systems["candidate"] = candidate
    for name, system in systems.items():
        if system is not None:
            system["ci"] = metrics.bootstrap_ci(system["per_example"])
            system["title"] = system_title(name, systems)
    present = {name: system for name, system in systems.items() if system is not None}
    best = best_baseline(systems)
    comparisons = {
        name: metrics.paired_bootstrap(system["per_example"], candidate["per_example"])
        for name, system in systems.items()
        if system is not None and name != "candidate"
    }
    # The verdict's references: the best prompted baseline, then production (the incumbent) if any.
    reference_names = [best] + (["production"] if systems["production"] is not None else [])
    references = [
        (_reference_title(name, systems), present[name], comparisons[name]) for name in reference_names
    ]
    regression_reference = reference_names[-1]
    regressed: list[tuple[str, float, float]] = []
    if task_type == TaskType.CLASSIFICATION:
        gold = [s.reference for s in samples]

        def report_of(system: dict[str, Any]) -> metrics.ClassificationReport:
            return metrics.classification_report(gold, system["predicted"], labels)

        regressed = metrics.regressions(
            report_of(present[regression_reference]),
            report_of(candidate),
            min_drop=REGRESSION_DROP,
        )
    report = {
        "version_id": version_id,
        "task_type": task_type,
        "n_examples": len(samples),
        "n_train": len(data.train),
        "baselines_key": key,
        "headline_name": candidate["headline_name"],
        "systems": systems,
        "candidate": {"headline": candidate["headline"]},
        "best_baseline": best,
        "reference": regression_reference,
        "comparisons": {name: c.__dict__ for name, c in comparisons.items()},
        "regressions": regressed,
        "small_classifier_does_as_well": small_classifier_does_as_well(systems["classical"], candidate),
        "verdict": verdict(candidate, references, regressed),
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


def system_title(name: str, systems: Mapping[str, Mapping[str, Any] | None]) -> str:
    """How the summary names a system: ``"Base + instructions, 2 examples per label"``.

    Args:
        name: A key of the report's ``systems``.
        systems: The report's systems.

    Returns:
        The title, with k (examples per label, or in all) and production's version filled in.
    """
    system = systems.get(name) or {}
    k_shot = system.get("k_shot") or {}
    per_label = k_shot.get("per_label")
    k = f"{per_label} examples per label" if per_label else f"{k_shot.get('examples', 0)} examples"
    return TITLES[name].format(k=k, version=system.get("version", ""))


def _reference_title(name: str, systems: Mapping[str, Mapping[str, Any] | None]) -> str:
    if name == "production":
        return system_title(name, systems).replace("Production", "production")
    return f"the best baseline ({system_title(name, systems)})"


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
