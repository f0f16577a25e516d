"""Unit and property tests for the readiness decision engine (runner/readiness.py)."""

from __future__ import annotations

import ast
import itertools
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.interview import readiness
from runner.interview.readiness import (
    QUESTION_IDS,
    QUESTIONS,
    Answer,
    Move,
    Recommendation,
    is_decided,
    next_question,
    parse_answers,
    recommend,
)

Y, N, NS = Answer.YES, Answer.NO, Answer.NOT_SURE

SITUATION_IDS = ("facts_change", "multi_step", "instructions_gap")
CHECKLIST_IDS = (
    "narrow_task",
    "correct_examples",
    "reviewers_agree",
    "behaviour_not_knowledge",
    "heldout_set",
    "known_metric",
    "tried_alternatives",
    "rollback_plan",
)


def full(**overrides: Answer) -> dict[str, Answer]:
    """A complete answer map: every situation NO, every checklist YES, then the overrides."""
    answers = {qid: N for qid in SITUATION_IDS} | {qid: Y for qid in CHECKLIST_IDS}
    for qid, answer in overrides.items():
        assert qid in answers, qid
        answers[qid] = answer
    return answers


def outcome(answers: Mapping[str, Answer]) -> tuple[Move, Move | None]:
    rec = recommend(answers)
    return rec.primary, rec.secondary


def mistake(word: str) -> str:
    """The one mistake sentence containing `word` (fails if it is missing or ambiguous)."""
    matches = [m.text for m in readiness.MISTAKES if word.lower() in m.text.lower()]
    assert len(matches) == 1, (word, matches)
    return matches[0]


WORKFLOW_FIRST = mistake("fixing the workflow")
BAD_LABELS = mistake("labels")
KNOWLEDGE_IN_WEIGHTS = mistake("weights")
NO_EVALS = mistake("eval design")
OVER_SCOPED = mistake("over-scoping")
OPERATIONS = mistake("operational cost")


# --- the tables themselves ----------------------------------------------------------------------------


def test_question_ids_and_order_are_fixed() -> None:
    assert QUESTION_IDS == SITUATION_IDS + CHECKLIST_IDS
    assert tuple(q.id for q in QUESTIONS) == QUESTION_IDS
    assert [q.kind for q in QUESTIONS] == ["situation"] * 3 + ["checklist"] * 8


def test_question_ids_are_snake_case_and_unique() -> None:
    assert len(set(QUESTION_IDS)) == len(QUESTION_IDS)
    for qid in QUESTION_IDS:
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", qid), qid


def test_texts_within_length_limits() -> None:  # property (g)
    for q in QUESTIONS:
        assert 0 < len(q.text) <= 150, q.id
        assert 0 < len(q.why) <= 200, q.id
        assert 0 < len(q.next_step) <= 300, q.id
        assert q.text.endswith("?"), q.id
        assert "\n" not in q.text + q.why + q.next_step, q.id


def test_mistakes_are_one_sentence_each() -> None:
    assert len(readiness.MISTAKES) == 6
    for m in readiness.MISTAKES:
        assert m.text.endswith(".")
        assert ". " not in m.text.rstrip("."), m.text


def test_upstream_votes_cover_each_checklist_item_once() -> None:
    votes = {v.question_id: (v.move, v.weight) for v in readiness.UPSTREAM_VOTES}
    assert len(votes) == len(readiness.UPSTREAM_VOTES)
    assert votes == {
        "narrow_task": (Move.WORKFLOW, 2),
        "correct_examples": (Move.PROMPT, 2),
        "reviewers_agree": (Move.PROMPT, 2),
        "behaviour_not_knowledge": (Move.RAG, 2),
        "heldout_set": (Move.PROMPT, 1),
        "known_metric": (Move.PROMPT, 1),
        "tried_alternatives": (Move.PROMPT, 1),
        "rollback_plan": (Move.WORKFLOW, 1),
    }
    assert readiness.UPSTREAM_TIE_ORDER == (Move.PROMPT, Move.RAG, Move.WORKFLOW)


def test_module_imports_only_the_standard_library() -> None:
    tree = ast.parse(Path(readiness.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports"
            imported.add((node.module or "").split(".")[0])
    assert imported, "the parser found no imports at all"
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


# --- Answer.parse and parse_answers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("yes", Y),
        ("YES", Y),
        ("No", N),
        ("not_sure", NS),
        ("Not Sure", NS),
        ("  unsure ", NS),
        ("UNSURE", NS),
    ],
)
def test_answer_parse_accepts_spellings(raw: str, expected: Answer) -> None:
    assert Answer.parse(raw) is expected


@pytest.mark.parametrize("raw", ["maybe", "", "y", "not-sure", "yess"])
def test_answer_parse_rejects_other_values(raw: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        Answer.parse(raw)
    message = str(excinfo.value)
    assert repr(raw) in message
    assert "'yes'" in message and "'not_sure'" in message


def test_answer_parse_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match="None"):
        Answer.parse(None)  # type: ignore[arg-type]


def test_parse_answers_returns_answers_in_interview_order() -> None:
    parsed = parse_answers({"rollback_plan": "No", "facts_change": "not sure", "narrow_task": "YES"})
    assert parsed == {"facts_change": NS, "narrow_task": Y, "rollback_plan": N}
    assert list(parsed) == ["facts_change", "narrow_task", "rollback_plan"]
    assert all(type(value) is Answer for value in parsed.values())


def test_parse_answers_unknown_id_names_it_and_lists_valid_ids() -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_answers({"narrow_task": "yes", "budget_ok": "yes"})
    message = str(excinfo.value)
    assert "'budget_ok'" in message
    for qid in QUESTION_IDS:
        assert qid in message


def test_parse_answers_bad_value_names_question_and_value() -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_answers({"heldout_set": "probably"})
    message = str(excinfo.value)
    assert "'heldout_set'" in message
    assert "'probably'" in message


def test_recommend_rejects_unknown_ids() -> None:
    with pytest.raises(ValueError, match="'typo_id'"):
        recommend({"typo_id": Y})


def test_recommend_accepts_plain_strings_like_parse_answers() -> None:
    as_strings = {qid: answer.value for qid, answer in full(facts_change=NS).items()}
    assert outcome(as_strings) == (Move.FINETUNE, Move.RAG)  # type: ignore[arg-type]


# --- primary rules, one test each -------------------------------------------------------------------


def test_rule1_changing_facts_gives_rag_even_over_other_situations() -> None:
    assert recommend(full(facts_change=Y)).primary is Move.RAG
    assert recommend(full(facts_change=Y, multi_step=Y, instructions_gap=Y)).primary is Move.RAG


def test_rule2_multi_step_gives_workflow_over_instructions_gap() -> None:
    assert recommend(full(multi_step=Y)).primary is Move.WORKFLOW
    assert recommend(full(multi_step=Y, instructions_gap=Y, narrow_task=N)).primary is Move.WORKFLOW


def test_rule3_instructions_gap_gives_prompt_engineering() -> None:
    assert recommend(full(instructions_gap=Y)).primary is Move.PROMPT
    assert recommend(full(instructions_gap=Y, behaviour_not_knowledge=N)).primary is Move.PROMPT


def test_rule4_fine_tuning_when_hard_gates_yes_and_most_answers_yes() -> None:
    assert recommend(full()).primary is Move.FINETUNE
    assert recommend(full(heldout_set=N, rollback_plan=NS)).primary is Move.FINETUNE
    # A third soft miss breaks "most answers yes".
    assert recommend(full(heldout_set=N, rollback_plan=NS, known_metric=N)).primary is not Move.FINETUNE


@pytest.mark.parametrize("gate", readiness.HARD_GATES)
@pytest.mark.parametrize("bad", [N, NS])
def test_rule4_any_hard_gate_miss_blocks_fine_tuning(gate: str, bad: Answer) -> None:
    assert recommend(full(**{gate: bad})).primary is not Move.FINETUNE


def test_situation_not_sure_is_never_read_as_yes_for_the_primary() -> None:
    answers = full(facts_change=NS, multi_step=NS, instructions_gap=NS)
    assert recommend(answers).primary is Move.FINETUNE
    answers = full(facts_change=NS, multi_step=NS, instructions_gap=NS, narrow_task=N)
    assert recommend(answers).primary is Move.WORKFLOW  # from the vote, not from multi_step


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"narrow_task": N}, (Move.WORKFLOW, None)),
        ({"behaviour_not_knowledge": NS}, (Move.RAG, None)),
        ({"correct_examples": N}, (Move.PROMPT, None)),
        # Ties go to the cheapest move: Prompt engineering, then RAG, then Workflow design.
        ({"narrow_task": N, "correct_examples": N}, (Move.PROMPT, Move.WORKFLOW)),
        ({"narrow_task": N, "behaviour_not_knowledge": N}, (Move.RAG, Move.WORKFLOW)),
        ({"behaviour_not_knowledge": N, "reviewers_agree": NS}, (Move.PROMPT, Move.RAG)),
        # Highest total wins: Workflow 3, RAG 2, Prompt 1.
        (
            {"narrow_task": N, "rollback_plan": N, "behaviour_not_knowledge": N, "heldout_set": N},
            (Move.WORKFLOW, Move.RAG),
        ),
        # Three soft misses only: Prompt 3, Workflow 0 -> no runner-up.
        ({"heldout_set": N, "known_metric": N, "tried_alternatives": NS}, (Move.PROMPT, None)),
        ({"heldout_set": N, "known_metric": N, "rollback_plan": N}, (Move.PROMPT, Move.WORKFLOW)),
    ],
)
def test_rule5_upstream_vote(overrides: dict[str, Answer], expected: tuple[Move, Move | None]) -> None:
    assert outcome(full(**overrides)) == expected


# --- secondary rules, one test each -------------------------------------------------------------------


def test_secondary_keep_retrieval_when_fine_tuning_and_facts_unsure() -> None:
    assert outcome(full(facts_change=NS)) == (Move.FINETUNE, Move.RAG)
    assert outcome(full(facts_change=N)) == (Move.FINETUNE, None)


def test_secondary_workflow_when_rag_and_multi_step() -> None:
    assert outcome(full(facts_change=Y, multi_step=Y)) == (Move.RAG, Move.WORKFLOW)
    assert outcome(full(facts_change=Y, multi_step=Y, narrow_task=N)) == (Move.RAG, Move.WORKFLOW)
    assert outcome(full(facts_change=Y, multi_step=NS, narrow_task=N)) == (Move.RAG, None)


@pytest.mark.parametrize(
    ("situation", "primary"),
    [("facts_change", Move.RAG), ("multi_step", Move.WORKFLOW), ("instructions_gap", Move.PROMPT)],
)
def test_secondary_fine_tuning_later_when_hard_gates_yes(situation: str, primary: Move) -> None:
    soft_all_no = {qid: N for qid in readiness.SOFT_ITEMS}
    assert outcome(full(**{situation: Y})) == (primary, Move.FINETUNE)
    assert outcome(full(**{situation: Y}, **soft_all_no)) == (primary, Move.FINETUNE)
    assert outcome(full(**{situation: Y}, reviewers_agree=NS)) == (primary, None)


def test_secondary_runner_up_of_the_vote() -> None:
    answers = full(narrow_task=N, correct_examples=N, heldout_set=N)
    assert outcome(answers) == (Move.PROMPT, Move.WORKFLOW)


def test_secondary_none_when_no_rule_applies() -> None:
    assert outcome(full(multi_step=Y, correct_examples=N)) == (Move.WORKFLOW, None)
    assert outcome(full(instructions_gap=Y, facts_change=NS, narrow_task=NS)) == (Move.PROMPT, None)


# --- reasons and drivers ------------------------------------------------------------------------------


def test_reasons_explain_primary_and_secondary() -> None:
    rec = recommend(full(facts_change=NS, heldout_set=N))
    assert len(rec.reasons) == 3  # primary, the open soft item, secondary
    assert "retrieval" in rec.reasons[-1]
    rec = recommend(full(narrow_task=N, correct_examples=N))
    assert len(rec.reasons) == 2
    assert Move.PROMPT.value in rec.reasons[0]
    assert Move.WORKFLOW.value in rec.reasons[1]
    for reason in rec.reasons:
        assert reason.endswith(".") and "{" not in reason


def test_drivers_are_what_the_deciding_rules_read_in_question_order() -> None:
    assert recommend(full(facts_change=Y, multi_step=Y)).drivers == (("facts_change", Y), ("multi_step", Y))
    assert recommend(full(instructions_gap=Y, narrow_task=N)).drivers == (("instructions_gap", Y),)
    ft = recommend(full(facts_change=NS))
    assert ft.drivers == (("facts_change", NS),) + tuple((qid, Y) for qid in CHECKLIST_IDS)
    upstream = recommend(full(narrow_task=N, heldout_set=NS))
    assert upstream.drivers == (("narrow_task", N), ("heldout_set", NS))


# --- blockers and mistakes ----------------------------------------------------------------------------


def test_blockers_are_bad_situation_and_checklist_answers_with_next_steps() -> None:
    answers = full(facts_change=NS, multi_step=Y, narrow_task=N, rollback_plan=NS)
    answers["instructions_gap"] = N
    rec = recommend(answers)
    assert [(b.question_id, b.answer) for b in rec.blockers] == [
        ("facts_change", NS),
        ("multi_step", Y),
        ("narrow_task", N),
        ("rollback_plan", NS),
    ]
    by_id = {q.id: q for q in QUESTIONS}
    for blocker in rec.blockers:
        assert blocker.text == by_id[blocker.question_id].text
        assert blocker.next_step == by_id[blocker.question_id].next_step
    assert recommend(full()).blockers == ()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"multi_step": Y}, {WORKFLOW_FIRST}),
        ({"instructions_gap": Y}, {WORKFLOW_FIRST}),
        ({"narrow_task": N}, {WORKFLOW_FIRST, OVER_SCOPED}),
        ({"narrow_task": NS}, {WORKFLOW_FIRST, OVER_SCOPED}),
        ({"reviewers_agree": N}, {BAD_LABELS}),
        ({"correct_examples": NS}, {BAD_LABELS}),
        ({"facts_change": Y}, {KNOWLEDGE_IN_WEIGHTS}),
        ({"facts_change": NS}, {KNOWLEDGE_IN_WEIGHTS}),
        ({"behaviour_not_knowledge": N}, {KNOWLEDGE_IN_WEIGHTS}),
        ({"heldout_set": N}, {NO_EVALS}),
        ({"known_metric": NS}, {NO_EVALS}),
        ({"rollback_plan": N}, {OPERATIONS}),
        ({"multi_step": NS, "instructions_gap": NS}, set()),
        ({}, set()),
    ],
)
def test_mistake_conditions(overrides: dict[str, Answer], expected: set[str]) -> None:
    assert set(recommend(full(**overrides)).mistakes) == expected


def test_mistakes_follow_table_order() -> None:
    rec = recommend(full(rollback_plan=N, facts_change=Y, narrow_task=N))
    order = [m.text for m in readiness.MISTAKES]
    assert list(rec.mistakes) == sorted(rec.mistakes, key=order.index)
    assert len(rec.mistakes) == 4


def test_only_answered_questions_trigger_mistakes_and_blockers() -> None:
    rec = recommend({"facts_change": N, "multi_step": N})
    assert rec.mistakes == ()
    assert rec.blockers == ()
    assert rec.drivers == ()  # Fine-tuning on unknown checklist answers: nothing answered drove it


# --- the guide's own cases ----------------------------------------------------------------------------


def test_guide_support_email_triage_is_fine_tuning_with_retrieval() -> None:
    answers = full(facts_change=NS, rollback_plan=NS)
    rec = recommend(answers)
    assert (rec.primary, rec.secondary) == (Move.FINETUNE, Move.RAG)
    assert [b.question_id for b in rec.blockers] == ["facts_change", "rollback_plan"]
    assert ("facts_change", NS) in rec.drivers
    assert KNOWLEDGE_IN_WEIGHTS in rec.mistakes and OPERATIONS in rec.mistakes
    assert not rec.stopped_early and rec.unanswered == ()


def test_guide_hr_pricing_security_assistant_is_rag() -> None:
    answers = full(facts_change=Y, narrow_task=N, behaviour_not_knowledge=N, heldout_set=NS)
    rec = recommend(answers)
    assert (rec.primary, rec.secondary) == (Move.RAG, None)
    assert rec.drivers[0] == ("facts_change", Y)
    assert KNOWLEDGE_IN_WEIGHTS in rec.mistakes
    assert "retrieval" in rec.reasons[0]


def test_guide_multi_step_tools_and_approvals_is_workflow_design() -> None:
    rec = recommend(full(multi_step=Y, correct_examples=N, tried_alternatives=N))
    assert (rec.primary, rec.secondary) == (Move.WORKFLOW, None)
    assert "orchestration" in rec.reasons[0]
    assert WORKFLOW_FIRST in rec.mistakes


def test_guide_vague_instructions_or_formatting_is_prompt_engineering() -> None:
    rec = recommend(full(instructions_gap=Y, reviewers_agree=NS))
    assert (rec.primary, rec.secondary) == (Move.PROMPT, None)
    assert WORKFLOW_FIRST in rec.mistakes and BAD_LABELS in rec.mistakes


def test_guide_several_checklist_nos_go_upstream_with_next_steps() -> None:
    answers = full(
        correct_examples=N,
        reviewers_agree=N,
        heldout_set=N,
        known_metric=NS,
        tried_alternatives=N,
        rollback_plan=N,
    )
    rec = recommend(answers)
    assert rec.primary is not Move.FINETUNE
    assert (rec.primary, rec.secondary) == (Move.PROMPT, Move.WORKFLOW)  # Prompt 7 points, Workflow 1
    assert [b.question_id for b in rec.blockers] == [
        "correct_examples",
        "reviewers_agree",
        "heldout_set",
        "known_metric",
        "tried_alternatives",
        "rollback_plan",
    ]
    assert all(b.next_step for b in rec.blockers)
    assert {BAD_LABELS, NO_EVALS, OPERATIONS} <= set(rec.mistakes)


# --- interview flow and early stop --------------------------------------------------------------------


def test_first_question_is_facts_change() -> None:
    first = next_question({})
    assert first is not None and first.id == "facts_change"
    assert not is_decided({})


def test_changing_facts_and_multi_step_stop_the_interview_early() -> None:
    answers = {"facts_change": Y, "multi_step": Y}
    assert is_decided(answers)
    assert next_question(answers) is None
    rec = recommend(answers)
    assert (rec.primary, rec.secondary) == (Move.RAG, Move.WORKFLOW)
    assert rec.stopped_early
    assert rec.unanswered == QUESTION_IDS[2:]


def test_changing_facts_alone_leaves_the_secondary_open() -> None:
    # The primary is RAG whatever comes next, but the secondary still depends on multi_step and the
    # hard gates, so (primary, secondary) is not decided yet and the interview goes on.
    answers = {"facts_change": Y}
    assert {recommend(full(facts_change=Y, **extra)).primary for extra in ({}, {"multi_step": Y})} == {
        Move.RAG
    }
    assert not is_decided(answers)
    question = next_question(answers)
    assert question is not None and question.id == "multi_step"
    assert not recommend(answers).stopped_early


def test_changing_facts_and_a_hard_gate_miss_stop_before_the_soft_items() -> None:
    answers = {"facts_change": Y, "multi_step": N, "instructions_gap": NS, "narrow_task": N}
    assert next_question(answers) is None
    rec = recommend(answers)
    assert (rec.primary, rec.secondary, rec.stopped_early) == (Move.RAG, None, True)
    assert rec.unanswered == QUESTION_IDS[4:]


def test_undecided_partial_interview_returns_next_question() -> None:
    answers = {"facts_change": N, "multi_step": N, "instructions_gap": N, "narrow_task": Y}
    question = next_question(answers)
    assert question is not None and question.id == "correct_examples"
    rec = recommend(answers)
    assert not rec.stopped_early
    assert rec.unanswered == QUESTION_IDS[4:]
    assert rec.primary is Move.FINETUNE  # unanswered read as "not bad"


def test_complete_interview_is_decided_but_not_stopped_early() -> None:
    answers = full()
    assert is_decided(answers)
    assert next_question(answers) is None
    rec = recommend(answers)
    assert not rec.stopped_early and rec.unanswered == ()


def test_empty_interview() -> None:
    rec = recommend({})
    assert rec.primary is Move.FINETUNE
    assert rec.unanswered == QUESTION_IDS
    assert not rec.stopped_early
    assert rec.blockers == () and rec.mistakes == ()


def test_to_dict_is_json_ready() -> None:
    rec = recommend({"facts_change": NS, "narrow_task": N})
    data = rec.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert set(data) == set(Recommendation.__dataclass_fields__)
    assert data["primary"] == rec.primary.value
    assert data["secondary"] == (rec.secondary.value if rec.secondary else None)
    assert data["blockers"][0] == {
        "question_id": "facts_change",
        "answer": "not_sure",
        "text": QUESTIONS[0].text,
        "next_step": QUESTIONS[0].next_step,
    }
    assert data["drivers"] == [{"question_id": qid, "answer": a.value} for qid, a in rec.drivers]
    assert data["unanswered"] == list(rec.unanswered)


def test_is_decided_on_its_slowest_inputs() -> None:
    # The slowest inputs found by exhaustive search (about 770 completions each; bench/pure_logic.py
    # measures them): decided exactly when every completion ends in the same outcome.
    for answers in ({}, {"facts_change": Y}, {"multi_step": Y}, {"facts_change": Y, "multi_step": Y}):
        missing = [qid for qid in QUESTION_IDS if qid not in answers]
        domains = [(Y, N, NS) if qid in SITUATION_IDS else (Y, N) for qid in missing]
        outcomes = {
            outcome(answers | dict(zip(missing, values, strict=True)))
            for values in itertools.product(*domains)
        }
        assert is_decided(answers) == (len(outcomes) == 1), answers


# --- property tests -----------------------------------------------------------------------------------

answer_values = st.sampled_from(list(Answer))
full_maps = st.fixed_dictionaries({qid: answer_values for qid in QUESTION_IDS})


@st.composite
def partial_maps(draw: st.DrawFn) -> dict[str, Answer]:
    """Interview prefixes (what the bot stores) and arbitrary subsets (what an answer file may hold)."""
    answers = draw(full_maps)
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(QUESTION_IDS)))
        return {qid: answers[qid] for qid in QUESTION_IDS[:cut]}
    keep = draw(st.sets(st.sampled_from(QUESTION_IDS)))
    return {qid: answers[qid] for qid in QUESTION_IDS if qid in keep}


@given(full_maps)
def test_prop_changing_facts_never_fine_tunes(answers: dict[str, Answer]) -> None:  # (a)
    answers["facts_change"] = Y
    assert recommend(answers).primary is not Move.FINETUNE


@given(full_maps, st.sampled_from(CHECKLIST_IDS))
def test_prop_a_checklist_yes_never_moves_away_from_fine_tuning(  # (b)
    answers: dict[str, Answer], qid: str
) -> None:
    before = recommend(answers).primary
    answers[qid] = Y
    if before is Move.FINETUNE:
        assert recommend(answers).primary is Move.FINETUNE


@given(full_maps)
def test_prop_all_checklist_yes_answers_keep_fine_tuning(answers: dict[str, Answer]) -> None:  # (b)
    before = recommend(answers).primary
    improved = dict(answers)
    for qid in CHECKLIST_IDS:
        if improved[qid] is not Y:
            improved[qid] = Y
            if before is Move.FINETUNE:
                assert recommend(improved).primary is Move.FINETUNE


@given(full_maps, st.sets(st.sampled_from(CHECKLIST_IDS)))
def test_prop_not_sure_equals_no_on_checklist(  # (c)
    answers: dict[str, Answer], swapped: set[str]
) -> None:
    as_no = {qid: (N if qid in CHECKLIST_IDS and a is NS else a) for qid, a in answers.items()}
    as_not_sure = {qid: (NS if qid in swapped and a is N else a) for qid, a in as_no.items()}
    assert outcome(as_no) == outcome(as_not_sure)
    assert recommend(as_no).mistakes == recommend(as_not_sure).mistakes


@given(full_maps)
def test_prop_secondary_differs_from_primary(answers: dict[str, Answer]) -> None:  # (d)
    rec = recommend(answers)
    assert rec.secondary is not rec.primary


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(partial_maps(), st.data())
def test_prop_decided_means_every_completion_agrees(  # (e)
    answers: dict[str, Answer], data: st.DataObject
) -> None:
    expected = outcome(answers)
    missing = [qid for qid in QUESTION_IDS if qid not in answers]
    decided = is_decided(answers)
    assert recommend(answers).stopped_early == (bool(missing) and decided)
    assert (next_question(answers) is None) == decided
    if not decided:
        return
    # Completions range over all three answers here, checklist NOT_SURE included.
    for _ in range(5):
        completion = answers | {qid: data.draw(answer_values, label=qid) for qid in missing}
        assert outcome(completion) == expected, completion


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(partial_maps())
def test_prop_undecided_means_some_completion_differs(answers: dict[str, Answer]) -> None:  # (e) converse
    if is_decided(answers):
        return
    missing = [qid for qid in QUESTION_IDS if qid not in answers]
    domains = [(Y, N, NS) if qid in SITUATION_IDS else (Y, N) for qid in missing]
    seen = set()
    for values in itertools.product(*domains):
        seen.add(outcome(answers | dict(zip(missing, values, strict=True))))
        if len(seen) > 1:
            return
    pytest.fail(f"is_decided said False but every completion gives {seen}")


@settings(deadline=None)
@given(full_maps)
def test_prop_early_stopped_interview_matches_full_answers(answers: dict[str, Answer]) -> None:
    asked: dict[str, Answer] = {}
    while (question := next_question(asked)) is not None:
        asked[question.id] = answers[question.id]
    assert list(asked) == list(QUESTION_IDS[: len(asked)])
    assert outcome(asked) == outcome(answers)


@given(full_maps)
def test_prop_every_blocker_has_a_next_step(answers: dict[str, Answer]) -> None:  # (f)
    rec = recommend(answers)
    for blocker in rec.blockers:
        assert blocker.next_step.strip()
        assert blocker.text.strip()
    bad = {qid for qid, a in answers.items() if (a is not N if qid in SITUATION_IDS else a is not Y)}
    assert {b.question_id for b in rec.blockers} == bad


@given(full_maps)
def test_prop_reasons_and_drivers_are_consistent(answers: dict[str, Answer]) -> None:
    rec = recommend(answers)
    assert rec.reasons and all(r.strip() and "{" not in r for r in rec.reasons)
    assert all(answers[qid] is a for qid, a in rec.drivers)
    ids = [qid for qid, _ in rec.drivers]
    assert ids == sorted(ids, key=QUESTION_IDS.index)
