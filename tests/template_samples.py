"""Sample data for every template: the ordinary case and the largest case the code can produce."""

from __future__ import annotations

from typing import Any

from runner import readiness

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
}
