"""Sample data for every template: the ordinary case and the largest case the code can produce."""

from __future__ import annotations

from typing import Any

from runner.interview import readiness

LONG = "x" * 500


def _result(answers: dict[str, str]) -> dict[str, Any]:
    recommendation = readiness.recommend(readiness.parse_answers(answers))
    return {
        "interview_id": 7,
        "user_id": "UALICE",
        "topic": "Route support emails",
        "result": recommendation.to_dict(),
        "secondary_reason": "",
        "drivers": [f"{q}: {a.value}" for q, a in recommendation.drivers],
        "answered": len(answers),
    }


ALL_NO = {q.id: "no" for q in readiness.QUESTIONS if q.kind == "checklist"} | {
    "facts_change": "no",
    "multi_step": "no",
    "instructions_gap": "no",
}
ALL_UNSURE = {q.id: "not_sure" for q in readiness.QUESTIONS}
TRIAGE = {"facts_change": "not_sure", "multi_step": "no", "instructions_gap": "no"} | {
    q.id: "yes" for q in readiness.QUESTIONS if q.kind == "checklist"
}
EVERY_QUESTION = [q for q in readiness.QUESTIONS]

SAMPLES: dict[str, list[dict[str, Any]]] = {
    "interview_started.json.j2": [
        {"user_id": "UALICE", "topic": "ticket router", "total": 11},
        {"user_id": "UALICE", "topic": "", "total": 11},
        {"user_id": "UALICE", "topic": LONG, "total": 11},
    ],
    "interview_question.json.j2": [
        {
            "interview_id": 1,
            "step": 0,
            "number": 1,
            "total": 11,
            "question": EVERY_QUESTION[0],
            "can_back": False,
            "recap": [],
        },
        *(
            {
                "interview_id": 123456789,
                "step": 99999,
                "number": i + 1,
                "total": 11,
                "question": q,
                "can_back": True,
                "recap": [f"{p.id.replace('_', ' ')}: Not sure" for p in EVERY_QUESTION[:i]],
            }
            for i, q in enumerate(EVERY_QUESTION)
        ),
    ],
    "interview_closed.json.j2": [
        {"answered": 11, "total": 11, "recap": [f"{q.id}: Not sure" for q in EVERY_QUESTION]},
        {"answered": 1, "total": 11, "recap": ["facts change: Yes"]},
    ],
    "interview_result.json.j2": [
        _result(TRIAGE),
        _result(ALL_NO),
        _result(ALL_UNSURE),
        _result({"facts_change": "yes"}),
    ],
    "help.json.j2": [
        {
            "command": "/finetune",
            "unknown": None,
            "commands": [{"usage": "/finetune help", "line": "`/finetune help` — this list"}],
        },
        {
            "command": "/finetune",
            "unknown": LONG,
            "commands": [
                {"usage": f"/finetune c{i}", "line": f"`/finetune c{i}` — {'y' * 150}"} for i in range(15)
            ],
        },
    ],
    "history.json.j2": [
        {"command": "/finetune", "rows": []},
        {"command": "/finetune", "rows": [f"• 2026-11-28 10:00 <@UALICE> — {'t' * 80} → *Fine-tuning*"] * 20},
    ],
    "notice.json.j2": [{"text": "That button was already used."}, {"text": LONG * 10}],
    "shadow_suggestion.json.j2": [
        {
            "project": "ticket-router",
            "version": 4,
            "production": "v3",
            "task_type": "classification",
            "label": "technical",
            "confidence": 0.95,
            "draft": "technical",
        },
        {
            "project": "replies",
            "version": 2,
            "production": "v1",
            "task_type": "generation",
            "label": None,
            "confidence": None,
            "draft": "We are sorry: your parcel ships today.",
        },
    ],
    "pilot_suggestion.json.j2": [
        {
            "project": "ticket-router",
            "version": 3,
            "task_type": "classification",
            "label": "billing",
            "confidence": 0.87,
            "draft": "billing",
            "legend": [":one: billing", ":two: technical", ":three: account", ":four: shipping"],
        },
        {
            "project": "ticket-router",
            "version": 3,
            "task_type": "classification",
            "label": None,
            "confidence": None,
            "draft": "I am not sure",
            "legend": [":one: billing", ":two: technical"],
        },
        {
            "project": "reply-drafts",
            "version": 1,
            "task_type": "generation",
            "label": None,
            "confidence": 0.42,
            "draft": "Hello! We refunded the duplicate charge.",
            "legend": [],
        },
    ],
    "drift_alert.json.j2": [
        {
            "project": "ticket-router",
            "version": 2,
            "accepted": 4,
            "reviewed": 12,
            "rate": "33%",
            "interval": "14–61%",
            "lines": [
                "• Offline eval accuracy of v2: 90%",
                "• v1 before it: 90% accepted of 10 (95% CI 60–98%)",
                "• CUSUM 3.12 ≥ 3.00: acceptance tested at 90% against a drop to 70%, after 10 reviews",
            ],
            "mention": "<!subteam^SONCALL>",
            "revision": 2,
            "resolved": False,
            "resolution": "",
        },
        {
            "project": "ticket-router",
            "version": 2,
            "accepted": 4,
            "reviewed": 12,
            "rate": "33%",
            "interval": "14–61%",
            "lines": ["• Offline eval accuracy of v2: not evaluated"],
            "mention": "",
            "revision": 2,
            "resolved": True,
            "resolution": "<@UCAROL> rolled back ticket-router: v2 → v1 (from the drift alert on v2).",
        },
    ],
    "shadow_report.json.j2": [
        {
            "project": "ticket-router",
            "version": 3,
            "production_version": 2,
            "production_revision": 4,
            "pairs": 30,
            "candidate": "90% (95% CI 74–97%)",
            "production": "70% (95% CI 52–83%)",
            "only_candidate": 7,
            "only_production": 1,
            "p_value": "0.070",
            "better": False,
        },
        {
            "project": "ticket-router",
            "version": 3,
            "production_version": 2,
            "production_revision": 4,
            "pairs": 60,
            "candidate": "95% (95% CI 86–98%)",
            "production": "70% (95% CI 57–80%)",
            "only_candidate": 16,
            "only_production": 1,
            "p_value": "0.000",
            "better": True,
        },
    ],
    "label_shift_alert.json.j2": [
        {
            "project": "ticket-router",
            "version": 2,
            "predicted": 60,
            "distance": "0.45",
            "threshold": "0.30",
            "lines": [
                "• billing: predicted 70%, trained on 25%",
                "• technical: predicted 10%, trained on 25%",
            ],
            "mention": "<!subteam^SONCALL>",
            "revision": 2,
            "resolved": False,
            "resolution": "",
        },
        {
            "project": "ticket-router",
            "version": 2,
            "predicted": 60,
            "distance": "0.45",
            "threshold": "0.30",
            "lines": ["• billing: predicted 70%, trained on 25%"],
            "mention": "",
            "revision": 2,
            "resolved": True,
            "resolution": "<@UCAROL> rolled back ticket-router: v2 → v1 (from the drift alert on v2).",
        },
    ],
}

GATES = [
    {
        "name": "Examples per label",
        "value": "3 (fewest)",
        "threshold": "≥ 10",
        "passed": False,
        "advice": "Post more examples in the thread, especially shipping.",
    },
    {
        "name": "Reviewer agreement",
        "value": "0.81 (krippendorff)",
        "threshold": "≥ 0.60",
        "passed": True,
        "advice": "Agree a rubric.",
    },
]
STATUS = {
    "name": "ticket-router",
    "gates": GATES,
    "trainable": False,
    "can_train": False,
    "total": 40,
    "pending": 3,
    "rejected": 1,
    "overlong": 0,
    "stale": 2,
}

SAMPLES.update(
    {
        "project_modal.json.j2": [
            {
                "metadata": '{"channel": "C1", "interview": 3}',
                "channel_id": "C1",
                "name": None,
                "max_reviewers": 100,
                "max_labels": 50,
            }
        ],
        "add_to_dataset_modal.json.j2": [
            {
                "metadata": "{}",
                "projects": [{"name": "ticket-router", "task_type": "classification"}],
                "in_thread": False,
                "preview": "my card was billed twice",
            },
            {
                "metadata": "{}",
                "projects": [{"name": f"p{i}", "task_type": "generation"} for i in range(100)],
                "in_thread": True,
                "preview": LONG,
            },
        ],
        "project_root.json.j2": [
            {
                "name": "ticket-router",
                "task_type": "classification",
                "legend": [":one: billing", ":two: technical"],
                "total": 42,
                "pending": 3,
                "conflicts": 1,
                "agreement": "Krippendorff's α 0.88, 91% raw",
                "gates_passed": 4,
                "gates_total": 6,
                "trainable": False,
                "counts": ["billing: 8", "technical: 7"],
                "reviewers": ["<@UALICE>", "<!subteam^S1>"],
            },
            {
                "name": "drafts",
                "task_type": "generation",
                "legend": [":white_check_mark: accept", ":x: reject"],
                "total": 0,
                "pending": 0,
                "conflicts": 0,
                "agreement": "not enough overlapping votes yet",
                "gates_passed": 6,
                "gates_total": 6,
                "trainable": True,
                "counts": [],
                "reviewers": [],
            },
        ],
        "project_status.json.j2": [
            STATUS,
            {**STATUS, "trainable": True, "can_train": True, "gates": [{**g, "passed": True} for g in GATES]},
        ],
        "conflicts.json.j2": [
            {
                "name": "ticket-router",
                "items": [],
                "total": 0,
                "first": 1,
                "page": 0,
                "more": False,
                "choices": [],
                "as_menu": False,
            },
            {
                "name": "ticket-router",
                "total": 40,
                "first": 16,
                "page": 1,
                "more": True,
                "items": [
                    {"id": i, "input": LONG, "target": LONG, "votes": ["billing ×1", "technical ×1"]}
                    for i in range(15)
                ],
                "choices": [{"label": f"label{i} :{i}:", "value": f"label{i}"} for i in range(4)],
                "as_menu": False,
            },
            {
                "name": "ticket-router",
                "total": 3,
                "first": 1,
                "page": 0,
                "more": False,
                "items": [
                    {"id": 7, "input": "refund?", "target": "", "votes": ["billing ×1", "shipping ×1"]}
                ],
                "choices": [{"label": f"label{i} :{i}:", "value": f"label{i}"} for i in range(25)],
                "as_menu": True,
            },
        ],
        "home.json.j2": [
            {"projects": [], "more": 0},
            {
                "projects": [
                    {
                        "name": f"p{i}",
                        "task_type": "classification",
                        "channel_id": "C1",
                        "total": 10,
                        "passed": 3,
                        "trainable": False,
                        "gates": [{"line": ":x: Examples per label: 3 (≥ 10)"}] * 6,
                        "pilot": None
                        if i
                        else ":test_tube: Pilot on in <#CPILOT> · v2: 4/12 accepted (33%, 95% CI 14–61%, "
                        "offline 90%) · :rotating_light: acceptance alert open on v2",
                        "ab": None
                        if i
                        else ":ab: Blind A/B #2: v3 won 100% of 2 votes (95% CI 100–100%) · v2 won 25% of "
                        "2 votes (95% CI 0–50%) · promote requires a won blind A/B against production",
                    }
                    for i in range(30)
                ],
                "more": 12,
            },
        ],
    }
)

RUN = {
    "run_id": 12,
    "project": "ticket-router",
    "status": "queued",
    "open": True,
    "requested_by": "<@UALICE>",
    "approved_by": "",
    "snapshot": "0123456789ab",
    "progress": {},
    "eta": "?",
    "plan": "",
    "metrics": {
        "final_train_loss": None,
        "best_eval_loss": None,
        "tokens_per_s": None,
        "wall": "?",
        "steps": None,
        "stopped_early": None,
    },
    "version": None,
    "error": "",
    "advice": "",
    "note": "",
    "checkpoint_step": None,
    "estimate": "",
}
SAMPLES.update(
    {
        "run_status.json.j2": [
            RUN,
            {
                **RUN,
                "status": "running",
                "progress": {
                    "epoch": 2,
                    "step": 40,
                    "total_steps": 120,
                    "loss": 0.4321,
                    "tokens_per_s": 4210.5,
                },
                "eta": "3m 05s",
                "plan": "lr 0.001 (auto) · 1,024 tokens/step (auto) · 3 epochs (auto) · "
                "16 steps/epoch, 48 in all",
            },
            {
                **RUN,
                "status": "finished",
                "open": False,
                "version": 3,
                "metrics": {
                    "final_train_loss": 0.0123,
                    "best_eval_loss": 0.0456,
                    "tokens_per_s": 4100.0,
                    "wall": "1m 02s",
                    "steps": 120,
                    "stopped_early": False,
                },
            },
            {
                **RUN,
                "status": "failed",
                "open": False,
                "error": "OutOfMemoryError: CUDA out of memory. " + LONG * 8,
                "advice": "Out of memory: retry with a smaller batch_tokens or max_len.",
            },
            {
                **RUN,
                "status": "cancelled",
                "open": False,
                "error": "Cancelled while training.",
                "requested_by": "cli:root",
            },
            {
                **RUN,
                "status": "paused",
                "open": False,
                "note": "Paused at step 40 (checkpoint kept); Resume goes on from there.",
                "checkpoint_step": 40,
            },
            {
                **RUN,
                "estimate": "Estimate: ~3m 05s · 28,545 tokens · 0.0009 GPU-h · ~590 MiB per process "
                "(measured (3 runs) throughput)",
            },
            {**RUN, "approved_by": "<@UCAROL>"},
            {
                **RUN,
                "status": "running",
                "progress": {"epoch": 1, "step": 13, "total_steps": 120, "loss": 0.5, "tokens_per_s": 99.0},
                "eta": "1m",
                "note": "Resumed from step 12 after its worker stopped (no heartbeat, or its job vanished) "
                "(automatic resume 1 of 2).",
                "checkpoint_step": 12,
            },
        ],
        "deployment.json.j2": [
            {
                "move": {
                    "project": "ticket-router",
                    "action": "promote",
                    "version": 2,
                    "previous": None,
                    "by": "UALICE",
                    "reason": "",
                    "revision": 1,
                }
            },
            {
                "move": {
                    "project": "ticket-router",
                    "action": "rollback",
                    "version": 1,
                    "previous": 2,
                    "by": "UCAROL",
                    "reason": LONG * 8,
                    "revision": 3,
                }
            },
        ],
        "promote_again.json.j2": [
            {
                "text": "v3 was rolled back by <@UCAROL> on 2026-12-01 10:00: latency doubled. It serves "
                "again only if you promote it by name and confirm.",
                "project": "ticket-router",
                "version": 3,
                "note": "v3 was rolled back by <@UCAROL> on 2026-12-01 10:00: latency doubled",
                "production_version": 2,
                "production_revision": 4,
            },
            {
                "text": LONG * 8,
                "project": "p" * 64,
                "version": 123456,
                "note": LONG,
                "production_version": None,
                "production_revision": 0,
            },
        ],
        "deploy_reconciled.json.j2": [
            {
                "project": "ticket-router",
                "outcome": outcome,
                "action": "rollback",
                "version": 2,
                "production": 3,
                "who": "<@UCAROL>",
                "detail": "not done: interrupted before it was committed",
            }
            for outcome in ("reverted", "finished", "redeployed", "stuck")
        ]
        + [
            {
                "project": "p" * 64,
                "outcome": "stuck",
                "action": "promote",
                "version": 123456,
                "production": None,
                "who": "cli:someone",
                "detail": LONG * 8,
            }
        ],
        "audit.json.j2": [
            {"project": "ticket-router", "rows": [], "details_hidden": False},
            {
                "project": "ticket-router",
                "rows": [f"• 2026-11-28 10:00 <@UBOB> rollback v2 :no_entry: refused — {LONG}"] * 30,
                "details_hidden": False,
            },
            {
                "project": "ticket-router",
                "rows": ["• 2026-11-28 10:00 <@UBOB> rollback v2 :no_entry: refused"] * 30,
                "details_hidden": True,
            },
        ],
    }
)

EVAL_ROWS = [
    {"title": "Base + instructions, zero-shot", "score": "0.25 [0.12–0.38]", "notes": []},
    {
        "title": "Base + instructions, 2 examples per label",
        "score": "0.41 [0.28–0.55]",
        "notes": ["best baseline"],
    },
    {"title": "TF-IDF + logistic regression", "score": "0.72 [0.58–0.85]", "notes": []},
    {"title": "Production v1", "score": "0.85 [0.75–0.95]", "notes": []},
    {"title": "Candidate v2", "score": "0.95 [0.88–1.00]", "notes": ["3% unparsable"]},
]
EVAL = {
    "project": "ticket-router",
    "version": 2,
    "headline_name": "accuracy",
    "n_examples": 40,
    "rows": EVAL_ROWS,
    "candidate": "0.95 [0.88–1.00]",
    "best": "0.41 [0.28–0.55]",
    "production": "0.85 [0.75–0.95]",
    "production_version": 1,
    "deltas": ["vs best baseline +0.54 [+0.38 to +0.70]", "vs production +0.10 [+0.03 to +0.18]"],
    "method": "Baselines choose among the labels by likelihood; production and the candidate answer freely.",
    "small_classifier": None,
    "regressions": [],
    "verdict": {
        "promote": True,
        "reason": "accuracy beats the best baseline (Base + instructions, 2 examples per label) by +0.54 "
        "(95% CI +0.38 to +0.70) and production v1 by +0.10 (95% CI +0.03 to +0.18) with no label regressing",
    },
    "tokens": {
        "zero-shot": "61 tokens",
        "k-shot": "412 tokens",
        "production": "60 tokens",
        "candidate": "60 tokens",
    },
    "latency": {
        "zero-shot": "0.05 s",
        "k-shot": "0.31 s",
        "TF-IDF": "<0.01 s",
        "production": "0.70 s",
        "candidate": "0.71 s",
    },
    "status": "candidate",
    "production_revision": 3,
}
REQUEST = {
    "request_id": 7,
    "project": "ticket-router",
    "status": "pending",
    "requested_by": "<@UALICE>",
    "decided_by": "",
    "run_id": None,
    "base_model": "smollm2-135m",
    "snapshot": "0123456789ab",
    "fields": {
        "examples": "76 training examples",
        "tokens": "28,545",
        "epochs": "2 epochs",
        "time": "~3m 05s",
        "gpu_hours": "0.00086 GPU-h",
        "memory": "~590 MiB per process",
        "hardware": "any worker · queue `train`",
        "throughput": "1,500 tokens/s (default)",
    },
    "budget": "",
    "over": False,
    "admins": "",
}
SAMPLES["training_request.json.j2"] = [
    REQUEST,
    {
        **REQUEST,
        "fields": {
            **REQUEST["fields"],
            "hardware": "a10 · queue `train-a10` · 2 processes",
            "throughput": "2,410 tokens/s (measured on a10 (3 runs))",
        },
        "budget": "Budget for November 2026: 8.2 GPU-h used, 1.5 GPU-h queued or running, this run "
        "0.50 GPU-h → 10.2 GPU-h of 10 GPU-h",
        "over": True,
        "admins": "<@UCAROL> <@UDAVE>",
    },
    {**REQUEST, "status": "cancelled", "decided_by": "<@UALICE>"},
    {**REQUEST, "status": "confirmed", "decided_by": "<@UALICE>", "run_id": 12},
]


SAMPLES["eval_summary.json.j2"] = [
    EVAL,
    {
        **EVAL,
        "rows": [row for row in EVAL_ROWS if not row["title"].startswith("Production")],
        "production": "—",
        "production_version": None,
        "deltas": EVAL["deltas"][:1],
        "small_classifier": "TF-IDF + logistic regression scores 0.93 [0.86–0.98] against the candidate's "
        "0.95 [0.88–1.00]: a small classifier does as well; you may not need a fine-tuned LLM.",
        "regressions": [f"label{i}: 0.90 → 0.70" for i in range(30)],
        "verdict": {"promote": False, "reason": LONG * 10},
        "production_revision": None,
    },
    {**EVAL, "status": "rolled_back", "project": "p" * 64, "version": 123456, "production_version": 123455},
    {
        **EVAL,
        "headline_name": "field F1",
        "rows": [
            {"title": "Base + instructions, zero-shot", "score": "0.31 [0.22–0.40]", "notes": []},
            {
                "title": "Base + instructions, 3 examples",
                "score": "0.52 [0.44–0.61]",
                "notes": ["best baseline"],
            },
            {"title": "Candidate v2", "score": "0.88 [0.83–0.92]", "notes": []},
        ],
        "production": "—",
        "production_version": None,
        "deltas": ["vs best baseline +0.36 [+0.27 to +0.45]"],
        "method": "Baselines and the candidate answer freely.",
        "tokens": {"zero-shot": "1,204 tokens", "k-shot": "2,950 tokens", "candidate": "1,180 tokens"},
        "latency": {"zero-shot": "12 s", "k-shot": "31 s", "candidate": "9.4 s"},
        "production_revision": None,
    },
    {
        **EVAL,
        "ab": [
            "Blind A/B #3 against v1: won 62% of 8 votes (95% CI 38–88%)",
            "Blind A/B #1 against v1, v3: won 25% of 4 votes (95% CI 0–62%)",
        ],
    },
]


# --- the largest contexts the product allows ---------------------------------------------------
# Limits enforced at input (runner.data.projects): 50 labels of 64 characters with 40-character
# emoji, 100 reviewers and user groups, 63-character project names. Text people typed carries
# `<!here>`, which must reach Slack escaped. Every template has at least one such context.

HERE = "<!here> "
NAME = "p" * 63
LABELS = [f"{HERE}{i:02d}".ljust(64, "l") for i in range(50)]
EMOJI = [f"e{i:02d}".ljust(40, "e") for i in range(50)]
REVIEWERS = [f"<@W{i:010d}>" for i in range(90)] + [f"<!subteam^S{i:010d}>" for i in range(10)]
TYPED = (HERE + "x" * 95) * 40  # 4,000 characters someone typed

STRESS: dict[str, list[dict[str, Any]]] = {
    "interview_started.json.j2": [{"user_id": "W0123456789", "topic": TYPED, "total": 11}],
    "interview_question.json.j2": SAMPLES["interview_question.json.j2"][-1:],
    "interview_closed.json.j2": SAMPLES["interview_closed.json.j2"][:1],
    "interview_result.json.j2": [{**_result(ALL_UNSURE), "topic": TYPED}],
    "help.json.j2": [{**SAMPLES["help.json.j2"][1], "unknown": TYPED}],
    "history.json.j2": [
        {"command": "/finetune", "rows": [f"• 2026-11-28 10:00 <@UALICE> — {'t' * 80} → *Fine-tuning*"] * 100}
    ],
    "notice.json.j2": [{"text": TYPED * 20}],
    "project_modal.json.j2": [
        {
            "metadata": '{"channel": "C1", "interview": 3, "response_url": "' + "h" * 500 + '"}',
            "channel_id": "C1",
            "name": None,
            "max_reviewers": 100,
            "max_labels": 50,
        }
    ],
    "add_to_dataset_modal.json.j2": [
        {
            "metadata": '{"channel": "C1", "ts": "1700000000.000100", "thread_ts": "1700000000.000100"}',
            "projects": [
                {"name": f"{i:02d}".ljust(63, "p"), "task_type": "classification"} for i in range(100)
            ],
            "in_thread": True,
            "preview": TYPED,
        }
    ],
    "project_root.json.j2": [
        {
            "name": NAME,
            "task_type": "classification",
            "legend": [f":{e}: {label}" for e, label in zip(EMOJI, LABELS, strict=True)],
            "total": 10**6,
            "pending": 10**6,
            "conflicts": 10**6,
            "agreement": "Krippendorff's α 0.88, 91% raw",
            "gates_passed": 6,
            "gates_total": 6,
            "trainable": True,
            "counts": [f"{label}: {10**6}" for label in LABELS],
            "reviewers": REVIEWERS,
        }
    ],
    "project_status.json.j2": [
        {
            **STATUS,
            "name": NAME,
            "gates": [{**g, "advice": g["advice"] + " " + ", ".join(LABELS)} for g in GATES] * 3,
        }
    ],
    "conflicts.json.j2": [
        {
            "name": NAME,
            "total": 10**4,
            "first": 15 * 99 + 1,
            "page": 99,
            "more": True,
            "items": [
                {
                    "id": 10**9 + i,
                    "input": TYPED,
                    "target": TYPED,
                    "votes": [f"{label} ×2" for label in LABELS],
                }
                for i in range(15)
            ],
            "choices": [
                {"label": f"{label} :{e}:", "value": label} for e, label in zip(EMOJI, LABELS, strict=True)
            ],
            "as_menu": True,
        },
        {
            "name": NAME,
            "total": 10**4,
            "first": 1,
            "page": 0,
            "more": True,
            "items": [
                {
                    "id": 10**9 + i,
                    "input": TYPED,
                    "target": TYPED,
                    "votes": [f"{label} ×2" for label in LABELS],
                }
                for i in range(15)
            ],
            "choices": [
                {"label": f"{label} :{e}:", "value": label}
                for e, label in zip(EMOJI, LABELS[:5], strict=False)
            ],
            "as_menu": False,
        },
    ],
    "home.json.j2": [
        {
            "projects": [
                {
                    "name": f"{i:02d}".ljust(63, "p"),
                    "task_type": "classification",
                    "channel_id": "C0123456789",
                    "total": 10**6,
                    "passed": 3,
                    "trainable": False,
                    "gates": [{"line": ":x: Examples per label: 3 (≥ 10) " + LABELS[0] * 10}] * 6,
                    "pilot": ":test_tube: Pilot on in <#C0123456789> · "
                    + " · ".join(
                        ["v1000000: 1000000/1000000 accepted (100%, 95% CI 100–100%, offline 100%)"] * 3
                    )
                    + " · :rotating_light: acceptance alert open on v1000000" * 3,
                    "ab": f":ab: Blind A/B #{10**7}: "
                    + " · ".join(["v1000000 won 100% of 10,000,000 votes (95% CI 100–100%)"] * 5)
                    + " · promote requires a won blind A/B against production",
                }
                for i in range(30)
            ],
            "more": 10**6,
        }
    ],
    "training_request.json.j2": [
        {
            **REQUEST,
            "project": NAME,
            "request_id": 10**9,
            "base_model": TYPED[:512],
            "fields": {
                "examples": f"{10**9:,} training examples",
                "tokens": f"{10**15:,}",
                "epochs": "1000 epochs",
                "time": "~99999h 59m",
                "gpu_hours": "1,000,000,000 GPU-h",
                "memory": "~99999.9 GiB per process",
                "hardware": "h" * 63 + " · queue `train-" + "h" * 63 + "` · 64 processes",
                "throughput": "1,000,000,000 tokens/s (measured on " + "h" * 63 + " (5 runs))",
            },
            "budget": "Budget for September 2026: " + " · ".join(["1,000,000,000 GPU-h"] * 5),
            "over": True,
            "admins": " ".join(f"<@W{i:010d}>" for i in range(5)),
        },
        {**REQUEST, "project": NAME, "status": "cancelled", "decided_by": "<@W0123456789>"},
    ],
    "run_status.json.j2": [
        {**RUN, "project": NAME, "status": "failed", "open": False, "error": TYPED * 3, "advice": TYPED},
        {
            **RUN,
            "project": NAME,
            "status": "paused",
            "open": False,
            "note": TYPED * 3,
            "checkpoint_step": 10**6,
        },
        {
            **RUN,
            "project": NAME,
            "status": "running",
            "progress": {
                "epoch": 10**6,
                "step": 10**6,
                "total_steps": 10**6,
                "loss": 1e300,
                "tokens_per_s": 1e300,
            },
            "eta": "9999h",
            "plan": TYPED * 3,
        },
    ],
    "deployment.json.j2": [
        {
            "move": {
                "project": NAME,
                "action": "rollback",
                "version": 10**6,
                "previous": 10**6 + 1,
                "by": "W0123456789",
                "reason": TYPED,
            }
        }
    ],
    "audit.json.j2": [
        {
            "project": NAME,
            "rows": [f"• 2026-11-28 10:00 <@W0123456789> adjudicate example 1 → {LABELS[0]}"] * 30,
            "details_hidden": False,
        }
    ],
    "eval_summary.json.j2": [
        {
            **EVAL,
            "project": NAME,
            "version": 10**6,
            "production_version": 10**6 - 1,
            "rows": [
                *EVAL_ROWS[:3],
                {"title": f"Production v{10**6 - 1}", "score": "0.85 [0.75–0.95]", "notes": []},
                {
                    "title": f"Candidate v{10**6}",
                    "score": "0.95 [0.88–1.00]",
                    "notes": ["100% unparsable"],
                },
            ],
            "small_classifier": "TF-IDF + logistic regression scores 1.00 [1.00–1.00] against the "
            "candidate's 1.00 [1.00–1.00]: a small classifier does as well; you may not need a "
            "fine-tuned LLM.",
            "tokens": {
                "zero-shot": "128,000 tokens",
                "k-shot": "128,000 tokens",
                "production": "128,000 tokens",
                "candidate": "128,000 tokens",
            },
            "latency": {
                "zero-shot": "86,400 s",
                "k-shot": "86,400 s",
                "TF-IDF": "86,400 s",
                "production": "86,400 s",
                "candidate": "86,400 s",
            },
            "regressions": [f"{label}: 0.90 → 0.70" for label in LABELS],
            "verdict": {"promote": False, "reason": TYPED},
        }
    ],
    "shadow_suggestion.json.j2": [
        {
            "project": NAME,
            "version": 10**6,
            "production": f"v{10**6 - 1}",
            "task_type": "classification",
            "label": None,
            "confidence": 0.0,
            "draft": TYPED * 3,
        },
        {
            "project": NAME,
            "version": 10**6,
            "production": f"v{10**6 - 1}",
            "task_type": "extraction",
            "label": None,
            "confidence": 1.0,
            "draft": TYPED * 3,
        },
    ],
    "pilot_suggestion.json.j2": [
        {
            "project": NAME,
            "version": 10**6,
            "task_type": "classification",
            "label": LABELS[0],
            "confidence": 1.0,
            "draft": TYPED,
            "legend": [f":{e}: {label}" for e, label in zip(EMOJI, LABELS, strict=True)],
        },
        {
            "project": NAME,
            "version": 10**6,
            "task_type": "classification",
            "label": None,
            "confidence": 0.0,
            "draft": TYPED * 3,
            "legend": [f":{e}: {label}" for e, label in zip(EMOJI, LABELS, strict=True)],
        },
        {
            "project": NAME,
            "version": 10**6,
            "task_type": "extraction",
            "label": None,
            "confidence": None,
            "draft": TYPED * 3,
            "legend": [],
        },
    ],
    "drift_alert.json.j2": [
        {
            "project": NAME,
            "version": 10**6,
            "accepted": 10**6,
            "reviewed": 10**7,
            "rate": "10%",
            "interval": "9–11%",
            "lines": ["• " + LABELS[0] * 5] * 40,
            "mention": " ".join(REVIEWERS),
            "revision": 10**6,
            "resolved": resolved,
            "resolution": TYPED,
        }
        for resolved in (False, True)
    ],
    "shadow_report.json.j2": [
        {
            "project": NAME,
            "version": 10**6,
            "production_version": 10**6 - 1,
            "production_revision": 10**6,
            "pairs": 10**7,
            "candidate": "100% (95% CI 100–100%)",
            "production": "100% (95% CI 100–100%)",
            "only_candidate": 10**7,
            "only_production": 10**7,
            "p_value": "1.000",
            "better": better,
        }
        for better in (False, True)
    ],
    "label_shift_alert.json.j2": [
        {
            "project": NAME,
            "version": 10**6,
            "predicted": 10**7,
            "distance": "1.00",
            "threshold": "0.30",
            "lines": [f"• {label}: predicted 100%, trained on 0%" for label in LABELS],
            "mention": " ".join(REVIEWERS),
            "revision": 10**6,
            "resolved": resolved,
            "resolution": TYPED,
        }
        for resolved in (False, True)
    ],
}
AB_ITEM = {
    "project": "ticket-router",
    "comparison_id": 3,
    "position": 2,
    "n": 20,
    "input": "I was charged twice for March",
    "output_a": "billing",
    "output_b": "shipping",
    "revealed": False,
    "version_a": None,
    "version_b": None,
    "votes": {"a": 0, "b": 0, "tie": 0},
}
AB_HEADER = {
    "project": "ticket-router",
    "comparison_id": 3,
    "versions": 2,
    "n": 20,
    "source": "held-out examples of the latest snapshot",
    "votes_needed": 2,
    "closed": False,
    "closed_by": None,
}
AB_RESULT = {
    "project": "ticket-router",
    "comparison_id": 3,
    "votes": 8,
    "items_voted": 4,
    "items": 4,
    "lines": [
        "• v1: won 62% of 8 votes (95% CI 38–88%)",
        "• v2: won 38% of 8 votes (95% CI 12–62%)",
    ],
    "pairs": [],
    "bradley_terry": False,
}
SAMPLES["ab_item.json.j2"] = [
    AB_ITEM,
    {**AB_ITEM, "revealed": True, "version_a": 2, "version_b": 1, "votes": {"a": 1, "b": 2, "tie": 1}},
    {**AB_ITEM, "output_b": "(no answer: the model failed on this input)"},
]
SAMPLES["ab_header.json.j2"] = [
    AB_HEADER,
    {**AB_HEADER, "versions": 3, "votes_needed": 1, "source": "recent pilot messages"},
    {**AB_HEADER, "closed": True, "closed_by": "<@UALICE>"},
]
SAMPLES["ab_result.json.j2"] = [
    AB_RESULT,
    {
        **AB_RESULT,
        "lines": [
            "• v3: won 100% of 2 votes (95% CI 100–100%) · Bradley–Terry 0.98",
            "• v2: won 25% of 2 votes (95% CI 0–50%) · Bradley–Terry 0.01",
            "• v1: won 25% of 2 votes (95% CI 0–50%) · Bradley–Terry 0.01",
        ],
        "pairs": [
            "• v3 against v2: v3 won 100% of 1 vote (95% CI 100–100%)",
            "• v3 against v1: v3 won 100% of 1 vote (95% CI 100–100%)",
            "• v2 against v1: v2 won 50% of 1 vote (95% CI 50–50%)",
        ],
        "bradley_terry": True,
    },
    {**AB_RESULT, "votes": 1, "items_voted": 1, "lines": ["• v1: no votes", "• v2: won 100% of 1 vote"]},
]
_AB_MANY = [
    f"• v{10**6 - i}: won 100% of 10,000,000 votes (95% CI 100–100%) · Bradley–Terry 1.00" for i in range(60)
]
STRESS["ab_item.json.j2"] = [
    {
        **AB_ITEM,
        "project": NAME,
        "comparison_id": 10**7,
        "position": 100,
        "n": 100,
        "input": TYPED,
        "output_a": "&" * 4000,
        "output_b": TYPED,
        "revealed": revealed,
        "version_a": 10**6,
        "version_b": 10**6 - 1,
        "votes": {"a": 10**3, "b": 10**3, "tie": 10**3},
    }
    for revealed in (False, True)
]
STRESS["ab_header.json.j2"] = [
    {
        **AB_HEADER,
        "project": NAME,
        "comparison_id": 10**7,
        "versions": 50,
        "n": 100,
        "votes_needed": 10**3,
        "closed": closed,
        "closed_by": "<@W0000000001>",
    }
    for closed in (False, True)
]
STRESS["ab_result.json.j2"] = [
    {
        **AB_RESULT,
        "project": NAME,
        "comparison_id": 10**7,
        "votes": 10**7,
        "items_voted": 100,
        "items": 100,
        "lines": _AB_MANY,
        "pairs": _AB_MANY * 20,
        "bradley_terry": True,
    }
]
STRESS["eval_summary.json.j2"] = [
    *STRESS["eval_summary.json.j2"],
    {
        **STRESS["eval_summary.json.j2"][0],
        "ab": [
            f"Blind A/B #{10**7} against "
            + ", ".join(f"v{10**6 - i}" for i in range(50))
            + ": won 100% of 10,000,000 votes (95% CI 100–100%)"
        ]
        * 5,
    },
]
# Notices whose fields are bounded by the product (no text people typed beyond what SAMPLES holds):
# their largest case is their largest sample.
for _name in ("promote_again.json.j2", "deploy_reconciled.json.j2"):
    STRESS.setdefault(_name, SAMPLES[_name][-1:])
