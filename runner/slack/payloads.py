"""Every Slack message and view ftbot sends, built from plain data and rendered from `templates/`.

Listeners (the bot) and jobs (the worker) both call these, so a message looks the same whoever
sends it. Nothing here calls Slack or the database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from runner.core.models import (
    ModelVersion,
    Prediction,
    PredictionStatus,
    Project,
    RunStatus,
    TrainingRequest,
    TrainingRun,
)
from runner.core.trainconfig import auto_epochs
from runner.data import projects
from runner.data.gates import Gate, ProjectStats
from runner.interview import readiness
from runner.interview.interviews import InterviewState
from runner.interview.readiness import Answer
from runner.registry import abtests
from runner.registry.pilot import ShadowReport
from runner.registry.versions import Move, Reconciled
from runner.slack.render import escape, render

ROOT_METADATA = "ftbot_project_root"
MAX_CONFLICTS_SHOWN = 15  # a page of conflicts: two blocks each, within a message's 50
MAX_BUTTON_CHOICES = 5  # more labels than this are offered as a select menu (an actions block holds 25)
MAX_HOME_PROJECTS = 30  # three blocks each, within the Home tab's 100
# What ftbot itself puts in a notice: user and channel mentions. Any other <…> is escaped.
_OWN_MARKUP = re.compile(r"<(?:@[UW][A-Z0-9]+|#[CG][A-Z0-9]+(?:\|[^<>|]*)?)>")
ANSWER_LABELS = {Answer.YES: "Yes", Answer.NO: "No", Answer.NOT_SURE: "Not sure"}
QUESTIONS_TOTAL = len(readiness.QUESTIONS)
SHORT = {q.id: q.id.replace("_", " ") for q in readiness.QUESTIONS}


def safe_markup(text: str) -> str:
    """`text` with ``&``, ``<`` and ``>`` escaped except in user and channel mentions: notices are
    ftbot's own words quoting, raw, what people typed (a project name, a label), and ``<!here>`` must
    not ping."""
    out: list[str] = []
    last = 0
    for match in _OWN_MARKUP.finditer(text):
        out.append(escape(text[last : match.start()]))
        out.append(match.group(0))
        last = match.end()
    out.append(escape(text[last:]))
    return "".join(out)


def notice(text: str) -> dict[str, Any]:
    """A one-section message (ephemeral answers, refusals, errors)."""
    return render("notice.json.j2", text=safe_markup(text))


def slack_person(who: str) -> str:
    """A Slack mention for user ids, the text itself for anything else (``cli:alice``)."""
    return f"<@{who}>" if re.fullmatch(r"[UW][A-Z0-9]+", who) else who


# --- the readiness interview --------------------------------------------------------------------


def recap(answers: dict[str, Answer]) -> list[str]:
    """``["facts change: No", …]`` for the context line under a question."""
    return [f"{SHORT[qid]}: {ANSWER_LABELS[value]}" for qid, value in answers.items()]


def interview_started(user_id: str, topic: str) -> dict[str, Any]:
    return render("interview_started.json.j2", user_id=user_id, topic=topic, total=QUESTIONS_TOTAL)


def question(state: InterviewState) -> dict[str, Any]:
    assert state.question is not None and state.interview.id is not None
    return render(
        "interview_question.json.j2",
        interview_id=state.interview.id,
        step=state.interview.step,
        number=state.number,
        total=QUESTIONS_TOTAL,
        question=state.question,
        can_back=bool(state.answers),
        recap=recap(state.answers),
    )


def interview_closed(state: InterviewState) -> dict[str, Any]:
    return render(
        "interview_closed.json.j2",
        answered=len(state.answers),
        total=QUESTIONS_TOTAL,
        recap=recap(state.answers),
    )


def interview_result(state: InterviewState) -> dict[str, Any]:
    assert state.recommendation is not None
    drivers = [f"{SHORT[qid]}: {ANSWER_LABELS[Answer(value)]}" for qid, value in state.recommendation.drivers]
    return render(
        "interview_result.json.j2",
        interview_id=state.interview.id,
        user_id=state.interview.user_id,
        topic=state.interview.topic,
        result=state.recommendation.to_dict(),
        secondary_reason="",
        drivers=drivers,
        answered=len(state.answers),
    )


# --- dataset projects ---------------------------------------------------------------------------


def emoji_legend(project: Project) -> list[str]:
    return [f":{emoji}: {escape(value)}" for emoji, value in projects.legend(project).items()]


def agreement_text(stats: ProjectStats) -> str:
    summary = stats.agreement
    if summary.coefficient is None:
        return "not enough overlapping votes yet"
    name = "Cohen's κ" if summary.method == "cohen" else "Krippendorff's α"
    percent = f", {summary.percent:.0%} raw" if summary.percent is not None else ""
    return f"{name} {summary.coefficient:.2f}{percent}"


def project_root(stats: ProjectStats) -> dict[str, Any]:
    """The project thread's root message: how to contribute, the legend and the live tally."""
    project = stats.project
    users, groups = project.reviewers, project.reviewer_groups
    return render(
        "project_root.json.j2",
        name=project.name,
        task_type=project.task_type,
        legend=emoji_legend(project),
        total=stats.total,
        pending=stats.pending,
        conflicts=len(stats.conflicts),
        agreement=agreement_text(stats),
        gates_passed=sum(1 for g in stats.gates if g.passed),
        gates_total=len(stats.gates),
        trainable=stats.trainable,
        counts=[f"{escape(label)}: {n}" for label, n in stats.counts.items()],
        reviewers=[f"<@{u}>" for u in users] + [f"<!subteam^{g}>" for g in groups],
    )


def root_metadata(project: Project) -> dict[str, Any]:
    """Message metadata naming the project, so a reply racing the root's ts can find it."""
    return {"event_type": ROOT_METADATA, "event_payload": {"project_id": project.id}}


def project_status(stats: ProjectStats, *, can_train: bool) -> dict[str, Any]:
    return render(
        "project_status.json.j2",
        name=stats.project.name,
        gates=[g.__dict__ for g in stats.gates],
        trainable=stats.trainable,
        can_train=can_train,
        total=stats.total,
        pending=stats.pending,
        rejected=stats.rejected,
        overlong=stats.overlong,
        stale=stats.stale_votes,
    )


def conflicts(stats: ProjectStats, page: int = 0) -> dict[str, Any]:
    """One page of the open conflicts (``Show more`` for the next), each with its label choices:
    a button per label for a few labels, a select menu for many."""
    legend = projects.legend(stats.project)
    choices = [{"label": f"{value} :{emoji}:", "value": value} for emoji, value in legend.items()]
    pages = max(1, -(-len(stats.conflicts) // MAX_CONFLICTS_SHOWN))
    page = min(max(page, 0), pages - 1)
    first = page * MAX_CONFLICTS_SHOWN
    items = [
        {
            "id": s.example.id,
            "input": s.example.input_text,
            "target": s.example.target_text or "",
            "votes": [f"{value} ×{n}" for value, n in s.consensus.counts.items()],
        }
        for s in stats.conflicts[first : first + MAX_CONFLICTS_SHOWN]
    ]
    return render(
        "conflicts.json.j2",
        name=stats.project.name,
        items=items,
        total=len(stats.conflicts),
        first=first + 1,
        page=page,
        more=page + 1 < pages,
        choices=choices,
        as_menu=len(choices) > MAX_BUTTON_CHOICES,
    )


def gate_line(gate: Gate) -> str:
    icon = ":white_check_mark:" if gate.passed else ":x:"
    return f"{icon} {escape(f'{gate.name}: {gate.value} ({gate.threshold})')}"


def home(
    all_stats: Sequence[ProjectStats],
    total: int | None = None,
    pilots: dict[str, str] | None = None,
    ab: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The App Home tab: every project (up to a limit, then how many more of `total`) with its gates,
    for projects in a pilot a line on its acceptance and alerts (`pilot_line`), and a line on its
    latest blind A/B (`runner.registry.abtests.home_line`)."""
    shown = [
        {
            "name": stats.project.name,
            "task_type": stats.project.task_type,
            "channel_id": stats.project.channel_id,
            "total": stats.total,
            "passed": sum(1 for g in stats.gates if g.passed),
            "trainable": stats.trainable,
            "gates": [{"line": gate_line(g)} for g in stats.gates],
            "pilot": (pilots or {}).get(stats.project.name),
            "ab": (ab or {}).get(stats.project.name),
        }
        for stats in all_stats[:MAX_HOME_PROJECTS]
    ]
    more = max((len(all_stats) if total is None else total) - len(shown), 0)
    return render("home.json.j2", surface="home", projects=shown, more=more)


def pilot_line(
    channel_id: str | None, enabled: bool, rows: Sequence[dict[str, Any]], open_alerts: Sequence[int]
) -> str:
    """A project's pilot for App Home: where, each version's acceptance against its offline accuracy
    (`runner.registry.pilot.VersionAcceptance.to_dict`), and the versions with an open alert."""
    where = f"on in <#{channel_id}>" if enabled and channel_id else "off"
    parts = [f":test_tube: Pilot {where}"]
    for row in rows[:3]:
        offline = f", offline {_percent(row['offline'])}" if row.get("offline") is not None else ""
        if row["reviewed"]:
            parts.append(
                f"v{row['version']}: {row['accepted']}/{row['reviewed']} accepted ({_percent(row['rate'])}, "
                f"95% CI {_percent(row['ci_low'])}–{_percent(row['ci_high'])}{offline})"
            )
        else:
            parts.append(f"v{row['version']}: {row['suggested']} suggestions, none reviewed yet{offline}")
    parts.extend(f":rotating_light: acceptance alert open on v{v}" for v in open_alerts)
    return " · ".join(parts)


def project_modal(
    channel_id: str, interview_id: int | None, response_url: str | None = None
) -> dict[str, Any]:
    """The project form; `response_url` (of the command or button that opened it) rides along in its
    metadata, to answer the person after the submission wherever Slack lets ftbot answer."""
    metadata = {"channel": channel_id, "interview": interview_id}
    if response_url:
        metadata["response_url"] = response_url
    return render(
        "project_modal.json.j2",
        surface="modal",
        metadata=json.dumps(metadata),
        channel_id=channel_id,
        name=None,
        max_reviewers=projects.MAX_REVIEWERS,
        max_labels=projects.MAX_LABELS,
    )


def add_to_dataset_modal(
    metadata: dict[str, Any], choices: Sequence[Project], *, in_thread: bool, preview: str
) -> dict[str, Any]:
    return render(
        "add_to_dataset_modal.json.j2",
        surface="modal",
        metadata=json.dumps(metadata),
        projects=[{"name": p.name, "task_type": p.task_type} for p in choices[:100]],
        in_thread=in_thread,
        preview=preview,
    )


# --- training runs ------------------------------------------------------------------------------


def duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:  # NaN
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def estimate_line(estimate: dict[str, Any] | None) -> str:
    """``Estimate: ~3m 05s · 28,545 tokens · 0.0009 GPU-h · ~590 MiB per process (measured (3 runs))``."""
    if not estimate:
        return ""
    memory = estimate.get("memory_bytes")
    parts = [
        f"~{duration(estimate.get('seconds'))}",
        f"{int(estimate.get('tokens', 0)):,} tokens",
        f"{float(estimate.get('gpu_hours', 0.0)):.4g} GPU-h",
        *([f"~{int(memory) // 2**20:,} MiB per process"] if memory else []),
    ]
    return f"Estimate: {' · '.join(parts)} ({estimate.get('throughput_source', 'default')} throughput)"


def gpu_hours(value: float | None) -> str:
    """GPU-hours for people: ``120 GPU-h``, ``1.5 GPU-h``, ``0.25 GPU-h``, ``0.0021 GPU-h``."""
    if value is None or value != value:
        return "? GPU-h"
    if value >= 100:
        return f"{value:,.0f} GPU-h"
    if value >= 1:
        return f"{value:.1f} GPU-h"
    if value >= 0.01:
        return f"{value:.2f} GPU-h"
    return f"{value:.2g} GPU-h" if value > 0 else "0 GPU-h"


def mebibytes(value: float | None) -> str:
    """``~590 MiB``, ``~12.4 GiB``; ``unknown`` without a figure."""
    if not value:
        return "unknown"
    return f"~{value / 2**30:.1f} GiB" if value >= 2**30 else f"~{value / 2**20:,.0f} MiB"


def estimate_fields(estimate: dict[str, Any], config: dict[str, Any]) -> dict[str, str]:
    """The preflight's figures for people, by what they are (the confirm message and `ftbot train`)."""
    procs = int(estimate.get("procs") or config.get("procs", 1) or 1)
    hardware = estimate.get("hardware_class")
    queue = estimate.get("queue") or "train"
    epochs = config.get("epochs")
    chosen = ""
    if epochs == 0:  # the rule chooses them from the data (runner.core.trainconfig)
        epochs, chosen = auto_epochs(int(estimate.get("examples", 0))), ", auto"
    speed = float(estimate.get("tokens_per_s") or 0.0)
    return {
        "examples": f"{int(estimate.get('examples', 0)):,} training examples",
        "tokens": f"{int(estimate.get('tokens', 0)):,}",
        "epochs": f"{epochs} epoch{'s' if epochs != 1 else ''}{chosen}" if isinstance(epochs, int) else "",
        "time": f"~{duration(estimate.get('seconds'))}",
        "gpu_hours": gpu_hours(estimate.get("gpu_hours")),
        "memory": mebibytes(estimate.get("memory_bytes"))
        + (" per process" if estimate.get("memory_bytes") else " (the base model is not on disk here)"),
        "hardware": (f"{hardware}" if hardware else "any worker")
        + f" · queue `{queue}`"
        + (f" · {procs} processes" if procs > 1 else ""),
        "throughput": f"{speed:,.0f} tokens/s ({estimate.get('throughput_source', 'default')})",
    }


def budget_line(spend: dict[str, Any] | None) -> str:
    """``Budget for November 2026: 1.2 GPU-h used, 0.50 GPU-h queued or running, this run 0.25 GPU-h
    → 1.9 GPU-h of 10 GPU-h``."""
    if not spend:
        return ""
    return (
        f"Budget for {spend.get('window')}: {gpu_hours(spend.get('spent'))} used, "
        f"{gpu_hours(spend.get('committed'))} queued or running, this run {gpu_hours(spend.get('run'))} "
        f"→ {gpu_hours(spend.get('total'))} of {gpu_hours(spend.get('limit'))}"
    )


def training_request(
    request: TrainingRequest, project: Project, *, admins: Sequence[str] = ()
) -> dict[str, Any]:
    """The message a training request is shown in: its estimate with Confirm (or, over the project's
    budget, Approve) and Cancel; once cancelled, who cancelled it. (Once confirmed, the message
    becomes the run's status message, `run_status`.)"""
    spend = request.budget or {}
    return render(
        "training_request.json.j2",
        request_id=request.id,
        project=project.name,
        status=str(request.status),
        requested_by=slack_person(request.requested_by),
        decided_by=slack_person(request.decided_by or ""),
        run_id=request.run_id,
        base_model=str(request.config.get("base_model", "")),
        snapshot=request.snapshot_id[:12],
        fields=estimate_fields(request.estimate, request.config),
        budget=budget_line(spend),
        over=bool(spend.get("over")),
        admins=" ".join(slack_person(a) for a in admins[:5]),
    )


def run_status(run: TrainingRun, project: Project, version: ModelVersion | None) -> dict[str, Any]:
    """The status message of a training run in its project thread."""
    progress = run.progress
    metrics = run.metrics or {}
    return render(
        "run_status.json.j2",
        run_id=run.id,
        project=project.name,
        status=run.status,
        open=run.status in (RunStatus.QUEUED, RunStatus.RUNNING),
        requested_by=slack_person(run.requested_by),
        approved_by=slack_person(run.approved_by) if run.approved_by else "",
        snapshot=run.snapshot_id[:12],
        progress=progress,
        eta=duration(progress.get("eta_s")) if progress else "?",
        metrics={
            "final_train_loss": metrics.get("final_train_loss"),
            "best_eval_loss": metrics.get("best_eval_loss"),
            "tokens_per_s": metrics.get("tokens_per_s"),
            "wall": duration(metrics.get("wall_time_s")),
            "steps": metrics.get("steps"),
            "stopped_early": metrics.get("stopped_early"),
        },
        version=version.number if version else None,
        error=run.error or "",
        advice=run.advice or "",
        note=run.note or "",
        checkpoint_step=run.checkpoint_step,
        estimate=estimate_line(run.estimate),
        # What the run trains with, those settings the rule chose marked "auto" (runner.core.trainconfig).
        plan=str(metrics.get("plan") or (progress or {}).get("plan") or ""),
    )


# --- evaluation and the registry ----------------------------------------------------------------


# Systems of an evaluation report, in the order the summary lists them, with their short names.
SYSTEMS = ("base", "base_k_shot", "classical", "production", "candidate")
SHORT_SYSTEM = {
    "base": "zero-shot",
    "base_k_shot": "k-shot",
    "classical": "TF-IDF",
    "production": "production",
    "candidate": "candidate",
}
SMALL_CLASSIFIER = "a small classifier does as well; you may not need a fine-tuned LLM"


def score_with_interval(system: dict[str, Any] | None) -> str:
    """A headline score for people: ``0.93 [0.88–0.97]`` (the 95% interval), ``—`` for no system."""
    if system is None:
        return "—"
    low, high = system.get("ci", (None, None))
    interval = f" [{low:.2f}–{high:.2f}]" if low is not None else ""
    return f"{system['headline']:.2f}{interval}"


def seconds(value: float) -> str:
    """A duration for people: ``0.51 s``, ``3.2 s``, ``41 s``, ``<0.01 s``."""
    if value < 0.01:
        return "<0.01 s"
    return f"{value:.2f} s" if value < 1 else f"{value:.1f} s" if value < 10 else f"{value:,.0f} s"


def tokens(value: float) -> str:
    """A token count for people: ``77 tokens``."""
    return f"{round(value):,} tokens"


def _title(name: str, system: dict[str, Any]) -> str:
    """A system's title as the evaluation named it (reports from before titles: a plain name)."""
    older = {"base": "Base + instructions", "production": f"Production v{system.get('version')}"}
    return str(system.get("title") or older.get(name, name))


def _difference(comparison: dict[str, Any]) -> str:
    return f"{comparison['mean_diff']:+.2f} [{comparison['ci_low']:+.2f} to {comparison['ci_high']:+.2f}]"


def eval_summary(
    project: Project, version: ModelVersion, report: dict[str, Any], ab: Sequence[str] = ()
) -> dict[str, Any]:
    """The evaluation summary posted to the project thread, with Promote / Rollback / Discard.

    Every baseline and the candidate get a row with their headline score and 95% interval; the
    candidate's difference from the best prompted baseline and from production is shown with its
    paired interval. Numbers are rounded for people (``0.93 [0.88–0.97]``, ``77 tokens``, ``0.51 s``).
    `ab` holds a line per closed blind A/B of the version (`runner.registry.abtests.version_lines`).
    """
    systems = report["systems"]
    present = {name: systems[name] for name in SYSTEMS if systems.get(name)}
    candidate, production = systems["candidate"], systems.get("production")
    best = report.get("best_baseline", "base")
    comparisons = report.get("comparisons", {})
    rows = []
    for name, system in present.items():
        title = f"Candidate v{version.number}" if name == "candidate" else _title(name, system)
        notes = ["best baseline"] if name == best else []
        if system.get("unparsable") is not None and system.get("method") == "generation":
            notes.append(f"{system['unparsable']:.0%} unparsable")
        rows.append({"title": title, "score": score_with_interval(system), "notes": notes})
    deltas = []
    if best in comparisons:
        deltas.append(f"vs best baseline {_difference(comparisons[best])}")
    if production and "production" in comparisons:
        deltas.append(f"vs production {_difference(comparisons['production'])}")
    if not comparisons and report.get("comparison"):  # a report from before the baselines
        deltas.append(f"vs {report.get('reference', 'base')} {_difference(report['comparison'])}")
    classical = systems.get("classical")
    small = (
        f"{_title('classical', classical)} scores {score_with_interval(classical)} against the "
        f"candidate's {score_with_interval(candidate)}: {SMALL_CLASSIFIER}."
        if report.get("small_classifier_does_as_well") and classical
        else None
    )
    method = (
        "Baselines choose among the labels by likelihood; production and the candidate answer freely."
        if report.get("task_type") == "classification"
        else "Baselines and the candidate answer freely."
    )
    return render(
        "eval_summary.json.j2",
        project=project.name,
        version=version.number,
        headline_name=report["headline_name"],
        n_examples=report["n_examples"],
        rows=rows,
        candidate=score_with_interval(candidate),
        best=score_with_interval(systems.get(best)),
        production=score_with_interval(production),
        production_version=production["version"] if production else None,
        deltas=deltas,
        method=method,
        small_classifier=small,
        regressions=[
            f"{label}: {before:.2f} → {after:.2f}" for label, before, after in report["regressions"]
        ],
        verdict=report["verdict"],
        tokens={
            SHORT_SYSTEM[n]: tokens(s["tokens"]["mean_total_tokens"])
            for n, s in present.items()
            if s.get("tokens")
        },
        latency={SHORT_SYSTEM[n]: seconds(s["latency"]["p95"]) for n, s in present.items()},
        status=version.status,
        # The move the buttons were drawn from: they act only while it is the latest.
        production_revision=report.get("production_revision"),
        ab=list(ab),
    )


def deployment(move: Move) -> dict[str, Any]:
    """The channel announcement of a promote or rollback."""
    return render("deployment.json.j2", move=move.__dict__)


def promote_again(
    project: str, version: int, note: str, *, production_version: int | None, production_revision: int
) -> dict[str, Any]:
    """The answer to promoting (or rolling back to) a version that was rolled back from: why not,
    and a button that promotes it again after a confirmation saying so."""
    text = f"{note}. It serves again only if you promote it by name and confirm."
    return render(
        "promote_again.json.j2",
        text=text,
        project=project,
        version=version,
        note=note,
        production_version=production_version,
        production_revision=production_revision,
    )


def deploy_reconciled(outcome: Reconciled) -> dict[str, Any]:
    """What the reconciler did about a deployment left half-way, for the project's channel."""
    return render(
        "deploy_reconciled.json.j2",
        project=outcome.project,
        outcome=outcome.outcome,
        action=outcome.action,
        version=outcome.version,
        production=outcome.production,
        who=slack_person(outcome.by),
        detail=outcome.detail,
    )


def audit_log(project: str, rows: Sequence[str], *, details_hidden: bool) -> dict[str, Any]:
    return render("audit.json.j2", project=project, rows=list(rows), details_hidden=details_hidden)


# --- the pilot ----------------------------------------------------------------------------------


def pilot_suggestion(project: Project, version: int, prediction: Prediction) -> dict[str, Any]:
    """A version's suggestion, posted in the thread of a pilot message; reviewers react on it."""
    return render(
        "pilot_suggestion.json.j2",
        project=project.name,
        version=version,
        task_type=str(project.task_type),
        label=prediction.label,
        confidence=prediction.confidence,
        draft=prediction.output_text or "",
        legend=emoji_legend(project),
    )


def shadow_suggestion(
    project: Project, version: int, production: int, prediction: Prediction
) -> dict[str, Any]:
    """A shadow candidate's answer to a pilot message, shown to the project's reviewers only (ephemeral,
    in the message's thread) when the owner chose so."""
    return render(
        "shadow_suggestion.json.j2",
        project=project.name,
        version=version,
        production=f"v{production}",
        task_type=str(project.task_type),
        label=prediction.label,
        confidence=prediction.confidence,
        draft=prediction.output_text or "",
    )


def _percent(value: float) -> str:
    return f"{value * 100:.0f}%"


def drift_alert(
    project: str,
    version: int,
    evidence: dict[str, Any],
    *,
    revision: int,
    mention: str,
    resolution: str | None = None,
) -> dict[str, Any]:
    """The acceptance-drop alert (`runner.registry.pilot.DriftCheck.evidence`), with a Rollback
    button drawn from production move `revision`; resolved, it shows how instead of the button."""
    lines = [
        f"• Offline eval accuracy of v{version}: "
        + (_percent(evidence["baseline"]) if evidence.get("baseline") is not None else "not evaluated")
    ]
    previous = evidence.get("previous")
    if previous:
        lines.append(
            f"• v{previous['version']} before it: "
            + (
                f"{_percent(previous['rate'])} accepted of {previous['reviewed']} "
                f"(95% CI {_percent(previous['ci_low'])}–{_percent(previous['ci_high'])})"
                if previous["reviewed"]
                else "no reviewed suggestions"
            )
        )
    lines.append(
        f"• CUSUM {evidence['statistic']:.2f} ≥ {evidence['threshold']:.2f}: acceptance tested at "
        f"{_percent(evidence['p0'])} against a drop to {_percent(evidence['p1'])}, "
        f"after at least {evidence['min_reviews']} reviews"
    )
    recent = "".join(":white_check_mark:" if ok else ":x:" for ok in evidence.get("recent", []))
    if recent:
        lines.append(f"• Latest reviews, oldest first: {recent}")
    return render(
        "drift_alert.json.j2",
        project=project,
        version=version,
        accepted=evidence["accepted"],
        reviewed=evidence["reviewed"],
        rate=_percent(evidence["rate"]),
        interval=f"{_percent(evidence['ci_low'])}–{_percent(evidence['ci_high'])}",
        lines=lines,
        mention=mention,
        revision=revision,
        resolved=resolution is not None,
        resolution=safe_markup((resolution or "")[:2600]),  # a reason as typed, escaped: ≤ 2990
    )


def label_shift_alert(
    project: str,
    version: int,
    evidence: dict[str, Any],
    *,
    revision: int,
    mention: str,
    resolution: str | None = None,
) -> dict[str, Any]:
    """The predicted-label-mix alert (`runner.registry.pilot.raise_label_shift_alert`), with the
    same Rollback button as the acceptance alert; resolved, it shows how instead."""
    predicted, trained = evidence["predicted_mix"], evidence["training_mix"]
    labels = sorted(
        set(predicted) | set(trained), key=lambda label: -abs(predicted.get(label, 0) - trained.get(label, 0))
    )
    lines = [
        f"• {escape(label)}: predicted {_percent(predicted.get(label, 0.0))}, "
        f"trained on {_percent(trained.get(label, 0.0))}"
        for label in labels
    ]
    return render(
        "label_shift_alert.json.j2",
        project=project,
        version=version,
        predicted=evidence["predicted"],
        distance=f"{evidence['distance']:.2f}",
        threshold=f"{evidence['threshold']:.2f}",
        lines=lines,
        mention=mention,
        revision=revision,
        resolved=resolution is not None,
        resolution=safe_markup((resolution or "")[:2600]),
    )


def shadow_report(report: ShadowReport, *, production_revision: int) -> dict[str, Any]:
    """The shadow candidate against production on live messages, with the eval summary's buttons."""
    figures = report.figures()

    def rate(name: str) -> str:
        low, high = figures[f"{name}_ci"]
        return f"{_percent(figures[f'{name}_rate'])} (95% CI {_percent(low)}–{_percent(high)})"

    better = report.only_candidate > report.only_production and report.p_value < 0.05
    return render(
        "shadow_report.json.j2",
        project=report.project,
        version=report.candidate,
        production_version=report.production,
        production_revision=production_revision,
        pairs=report.pairs,
        candidate=rate("candidate"),
        production=rate("production"),
        only_candidate=report.only_candidate,
        only_production=report.only_production,
        p_value=f"{report.p_value:.3f}",
        better=better,
    )


# --- blind A/B ---------------------------------------------------------------------------------


def comparison_header(
    project: str,
    comparison_id: int,
    *,
    versions: int,
    n: int,
    source: str,
    votes_needed: int,
    closed_by: str | None = None,
    closed: bool = False,
) -> dict[str, Any]:
    """The message a comparison's items reply to; it names no version until the comparison closes."""
    return render(
        "ab_header.json.j2",
        project=project,
        comparison_id=comparison_id,
        versions=versions,
        n=n,
        source=abtests.SOURCE_NAMES.get(source, source),
        votes_needed=votes_needed,
        closed=closed,
        closed_by=slack_person(closed_by) if closed_by else None,
    )


def _output(prediction: Prediction) -> str:
    if prediction.status == PredictionStatus.FAILED:
        return "(no answer: the model failed on this input)"
    return prediction.output_text or "(an empty answer)"


def comparison_item(
    project: str,
    comparison_id: int,
    position: int,
    n: int,
    *,
    input_text: str,
    a: Prediction,
    b: Prediction,
    revealed: tuple[int, int] | None = None,
    votes: dict[str, int] | None = None,
) -> dict[str, Any]:
    """One item: an input and two answers as A and B. Until `revealed` (the versions shown as A
    and B) is given, nothing in it says which version wrote which answer."""
    return render(
        "ab_item.json.j2",
        project=project,
        comparison_id=comparison_id,
        position=position,
        n=n,
        input=input_text,
        output_a=_output(a),
        output_b=_output(b),
        revealed=revealed is not None,
        version_a=revealed[0] if revealed else None,
        version_b=revealed[1] if revealed else None,
        votes={"a": 0, "b": 0, "tie": 0, **(votes or {})},
    )


def comparison_result(project: str, comparison_id: int, result: dict[str, Any]) -> dict[str, Any]:
    """The result of a closed comparison: each version's win rate with its bootstrap interval (and
    Bradley–Terry strength with more than two versions), then each pair's record."""
    rows = sorted(result["versions"], key=lambda r: -(r["bt"] if r["bt"] is not None else r["win_rate"] or 0))
    many = len(rows) > 2
    lines = [
        f"• v{r['version']}: "
        + abtests.describe_rate(r["win_rate"], r["ci"], r["votes"])
        + (f" · Bradley–Terry {r['bt']:.2f}" if many and r["bt"] is not None else "")
        for r in rows
    ]
    pairs = (
        [
            f"• v{p['versions'][0]} against v{p['versions'][1]}: v{p['versions'][0]} "
            + abtests.describe_rate(p["win_rate"], p["ci"], p["votes"])
            for p in result["pairs"]
        ]
        if many
        else []
    )
    return render(
        "ab_result.json.j2",
        project=project,
        comparison_id=comparison_id,
        votes=result["votes"],
        items_voted=result["items_voted"],
        items=result["items"],
        lines=lines,
        pairs=pairs,
        bradley_terry=many,
    )
