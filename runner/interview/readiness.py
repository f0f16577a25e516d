"""Readiness decision engine: should this team fine-tune a model, or fix something upstream first?

The Slack interview asks a fixed list of yes / no / not-sure questions: three about the situation
(changing facts, multi-step work, an instructions gap) and the eight-item checklist to clear before
approving a fine-tuning project. This module turns those answers into a recommendation: the best first
move (prompt engineering, retrieval, workflow design or fine-tuning), an optional second move, the
reasons, the blocking answers with their next steps, and the common mistakes the answers point to.

Everything here is pure and uses only the standard library: no Slack, no database, no network. The
rules, their reasons, the upstream vote and the mistakes are data (tuples of frozen dataclasses), read
by a few small evaluator functions, so changing the policy means editing a table, not control flow.

How answers are read:

* Situation questions: YES points away from fine-tuning; NOT_SURE never counts as YES when choosing the
  primary move, but it is still reported as a blocker ("find out").
* Checklist questions: only YES passes; NO and NOT_SURE behave identically in every rule.
* Unanswered questions count as "not bad" when recommending on a partial interview, and are listed in
  `Recommendation.unanswered`. `is_decided` says whether any answer still to come could change the
  (primary, secondary) outcome, which lets the interview stop early.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

__all__ = [
    "Answer",
    "Blocker",
    "CHECKLIST",
    "HARD_GATES",
    "MISTAKES",
    "MAX_SOFT_MISSES",
    "Move",
    "Question",
    "QUESTIONS",
    "QUESTION_IDS",
    "RULES",
    "Recommendation",
    "SECONDARY_RULES",
    "SITUATION",
    "SOFT_ITEMS",
    "UPSTREAM_TIE_ORDER",
    "UPSTREAM_VOTES",
    "is_decided",
    "next_question",
    "parse_answers",
    "recommend",
]

SITUATION = "situation"
CHECKLIST = "checklist"


class Answer(StrEnum):
    """One answer to an interview question."""

    YES = "yes"
    NO = "no"
    NOT_SURE = "not_sure"

    @classmethod
    def parse(cls, value: str) -> Answer:
        """Read an answer typed by a person or stored in a file.

        Args:
            value: "yes", "no", "not_sure", "not sure" or "unsure", in any letter case; surrounding
                whitespace is ignored.

        Returns:
            The matching `Answer`.

        Raises:
            ValueError: the value is not one of the accepted spellings.
        """
        if isinstance(value, str):
            found = _ANSWER_SPELLINGS.get(value.strip().lower())
            if found is not None:
                return found
        accepted = ", ".join(repr(spelling) for spelling in _ANSWER_SPELLINGS)
        raise ValueError(f"invalid answer {value!r}: expected one of {accepted} (any letter case)")


_ANSWER_SPELLINGS: dict[str, Answer] = {
    "yes": Answer.YES,
    "no": Answer.NO,
    "not_sure": Answer.NOT_SURE,
    "not sure": Answer.NOT_SURE,
    "unsure": Answer.NOT_SURE,
}


class Move(StrEnum):
    """A way to improve the model's results; the value is the label shown to people."""

    PROMPT = "Prompt engineering"
    RAG = "RAG"
    WORKFLOW = "Workflow design"
    FINETUNE = "Fine-tuning"


@dataclass(frozen=True)
class Question:
    """One interview question.

    Attributes:
        id: stable snake_case id, the key in storage and in answer files.
        kind: "situation" or "checklist".
        text: the question as asked (at most 150 characters).
        why: one line on why it matters (at most 200 characters).
        next_step: the concrete next step when the answer is a blocker (at most 300 characters).
    """

    id: str
    kind: str
    text: str
    why: str
    next_step: str


QUESTIONS: tuple[Question, ...] = (
    Question(
        id="facts_change",
        kind=SITUATION,
        text=(
            "Do good answers depend on facts that change over time, such as policies, prices, "
            "inventory or contracts?"
        ),
        why="Changing facts belong in retrieval: whatever is trained into the weights starts going stale "
        "the day training ends.",
        next_step=(
            "List the facts the answers rely on and how often each one changes; serve the changing ones "
            "from a retrieval index with cited sources and keep them out of the training data."
        ),
    ),
    Question(
        id="multi_step",
        kind=SITUATION,
        text="Is the job multi-step work that spans several tools, systems or approval steps?",
        why="When the hard part is coordinating steps and hand-offs, the fix is orchestration, not a "
        "better-trained model.",
        next_step=(
            "Map the steps, tools and approvals end to end and design the workflow or agent around them "
            "first; then check whether any single step still needs a better model."
        ),
    ),
    Question(
        id="instructions_gap",
        kind=SITUATION,
        text="Is the gap mostly about instructions, output format or how the model should act in its role?",
        why="Instruction, format and role problems are the cheapest to fix: prompting solves them in hours, "
        "not weeks.",
        next_step=(
            "Rewrite the prompt with explicit instructions, the output schema and a few worked examples, "
            "then compare the results on a small fixed set of real inputs."
        ),
    ),
    Question(
        id="narrow_task",
        kind=CHECKLIST,
        text="Can you name the one narrow, repeated task the model must do better?",
        why="A tuned model learns one stable job well; a broad goal like 'make the assistant smarter' "
        "gives it no target.",
        next_step=(
            "Pick a single repeated job, such as routing tickets or extracting invoice fields, and write "
            "down its inputs, expected outputs and weekly volume."
        ),
    ),
    Question(
        id="correct_examples",
        kind=CHECKLIST,
        text="Do you already have examples of clearly correct outputs for real inputs?",
        why="Tuning copies what the examples show, so a small clean set beats a large noisy one.",
        next_step=(
            "Collect a few hundred real inputs with reviewed target outputs; fix or drop anything "
            "ambiguous instead of padding the set."
        ),
    ),
    Question(
        id="reviewers_agree",
        kind=CHECKLIST,
        text="Do reviewers consistently agree on what a good answer looks like?",
        why="If the people judging outputs disagree on the target, the model learns the disagreement.",
        next_step=(
            "Write a rubric or label guide, have two reviewers label the same sample, and settle the "
            "disagreements until they reliably match."
        ),
    ),
    Question(
        id="behaviour_not_knowledge",
        kind=CHECKLIST,
        text="Is the problem how the model behaves, rather than knowledge it is missing?",
        why="Training shapes behaviour; missing or fresh knowledge is better supplied at request time "
        "through retrieval.",
        next_step=(
            "Sort recent failures into 'did not know' and 'knew but behaved badly'; send the knowledge "
            "gaps to retrieval and keep only the behaviour failures as tuning targets."
        ),
    ),
    Question(
        id="heldout_set",
        kind=CHECKLIST,
        text="Do you have a held-out evaluation set that is never used for training?",
        why="Without untouched test data you cannot tell a real improvement from memorised examples.",
        next_step=(
            "Set aside a representative slice of real cases, known failures included, as a frozen test "
            "set before any training starts."
        ),
    ),
    Question(
        id="known_metric",
        kind=CHECKLIST,
        text="Do you know which metric matters most: accuracy, format consistency, latency, cost or tone?",
        why="'It looks better' hides regressions; one agreed metric makes every change measurable.",
        next_step=(
            "Agree the primary metric and a pass threshold with the task owner, then score the current "
            "prompt-only setup against it as the baseline."
        ),
    ),
    Question(
        id="tried_alternatives",
        kind=CHECKLIST,
        text="Have you already tried better prompting, grounding or workflow controls?",
        why="Cheaper fixes often close the gap, and they set the baseline a fine-tune has to beat.",
        next_step=(
            "Run a time-boxed attempt with improved prompts, retrieval or guardrails, and record its "
            "results as the baseline to beat."
        ),
    ),
    Question(
        id="rollback_plan",
        kind=CHECKLIST,
        text="Do you have a rollback plan if the tuned model underperforms?",
        why="A tuned model has to be deployed, monitored and sometimes retrained; without a way back, a bad "
        "release stays live.",
        next_step=(
            "Keep the current setup deployable, pilot in shadow mode or on a small slice of traffic, and "
            "agree in advance what triggers a switch back."
        ),
    ),
)

QUESTION_IDS: tuple[str, ...] = tuple(question.id for question in QUESTIONS)

_BY_ID: dict[str, Question] = {question.id: question for question in QUESTIONS}

# --- decision data -------------------------------------------------------------------------------------

_ANY_YES = frozenset({Answer.YES})

# Checklist items that must all be YES before fine-tuning is considered at all.
HARD_GATES: tuple[str, ...] = (
    "narrow_task",
    "correct_examples",
    "reviewers_agree",
    "behaviour_not_knowledge",
)
# Checklist items of which at most MAX_SOFT_MISSES may be NO / NOT_SURE ("most answers yes").
SOFT_ITEMS: tuple[str, ...] = ("heldout_set", "known_metric", "tried_alternatives", "rollback_plan")
MAX_SOFT_MISSES = 2

# Answers that make a question a blocker, by kind.
_BLOCKING_ANSWERS: dict[str, frozenset[Answer]] = {
    SITUATION: frozenset({Answer.YES, Answer.NOT_SURE}),
    CHECKLIST: frozenset({Answer.NO, Answer.NOT_SURE}),
}

# How an unanswered question is read while recommending: as "not bad".
_UNANSWERED_READS_AS: dict[str, Answer] = {SITUATION: Answer.NO, CHECKLIST: Answer.YES}

# The answers that completions of an unanswered question range over in `is_decided`. Checklist items
# skip NOT_SURE because every rule treats it exactly like NO.
_COMPLETION_DOMAIN: dict[str, tuple[Answer, ...]] = {
    SITUATION: (Answer.YES, Answer.NO, Answer.NOT_SURE),
    CHECKLIST: (Answer.YES, Answer.NO),
}

_Condition = tuple[tuple[str, frozenset[Answer]], ...]
"""All of: each (question id, allowed answers) pair must hold."""


@dataclass(frozen=True)
class _Rule:
    """One row of the primary decision table; the first row whose conditions hold wins.

    `move` None means "the move that wins the upstream vote". `quota` is (ids, n): at most n of those
    items may be something other than YES. `reads` are the questions reported as the decision's drivers.
    """

    id: str
    move: Move | None
    reason: str
    reads: tuple[str, ...]
    requires: _Condition = ()
    quota: tuple[tuple[str, ...], int] | None = None


RULES: tuple[_Rule, ...] = (
    _Rule(
        id="changing_facts",
        move=Move.RAG,
        requires=(("facts_change", _ANY_YES),),
        reads=("facts_change",),
        reason=(
            "The answers depend on facts that change, and training is a poor substitute for fresh source "
            "data, so ground the model with retrieval first."
        ),
    ),
    _Rule(
        id="multi_step",
        move=Move.WORKFLOW,
        requires=(("multi_step", _ANY_YES),),
        reads=("multi_step",),
        reason=(
            "The work spans several steps, tools and approvals, so the main problem is orchestration "
            "rather than adapting the model."
        ),
    ),
    _Rule(
        id="instructions_gap",
        move=Move.PROMPT,
        requires=(("instructions_gap", _ANY_YES),),
        reads=("instructions_gap",),
        reason=(
            "The gap is mainly instructions, output format or role behaviour, which prompt engineering "
            "fixes most cheaply and quickly."
        ),
    ),
    _Rule(
        id="ready_to_tune",
        move=Move.FINETUNE,
        requires=tuple((gate, _ANY_YES) for gate in HARD_GATES),
        quota=(SOFT_ITEMS, MAX_SOFT_MISSES),
        reads=HARD_GATES + SOFT_ITEMS,
        reason=(
            "The task is narrow, correct examples exist, reviewers agree and the gap is behaviour rather "
            "than knowledge, so training examples can shape durable task behaviour."
        ),
    ),
    _Rule(
        id="upstream_fix",
        move=None,
        reads=HARD_GATES + SOFT_ITEMS,
        reason=(
            "Checklist gaps ({misses} of 8 answers No or Not sure) make upstream work a better investment "
            "than training; those gaps point mostly to {move}."
        ),
    ),
)

_UPSTREAM_RULES = frozenset(rule.id for rule in RULES if rule.move is None)
_SITUATION_RULES = frozenset({"changing_facts", "multi_step", "instructions_gap"})


@dataclass(frozen=True)
class _Vote:
    """A not-YES answer to `question_id` adds `weight` points to `move` in the upstream vote."""

    question_id: str
    move: Move
    weight: int


UPSTREAM_VOTES: tuple[_Vote, ...] = (
    _Vote("narrow_task", Move.WORKFLOW, 2),
    _Vote("correct_examples", Move.PROMPT, 2),
    _Vote("reviewers_agree", Move.PROMPT, 2),
    _Vote("behaviour_not_knowledge", Move.RAG, 2),
    _Vote("heldout_set", Move.PROMPT, 1),
    _Vote("known_metric", Move.PROMPT, 1),
    _Vote("tried_alternatives", Move.PROMPT, 1),
    _Vote("rollback_plan", Move.WORKFLOW, 1),
)
# Ties in the upstream vote go to the cheapest move, first in this order.
UPSTREAM_TIE_ORDER: tuple[Move, ...] = (Move.PROMPT, Move.RAG, Move.WORKFLOW)
_TIE_RANK: dict[Move, int] = {move: rank for rank, move in enumerate(UPSTREAM_TIE_ORDER)}


@dataclass(frozen=True)
class _SecondaryRule:
    """One row of the secondary table, tried in order after the primary rule `after` matched.

    `move` None means "the runner-up of the upstream vote, if it got any points".
    """

    id: str
    after: frozenset[str]
    move: Move | None
    reason: str
    reads: tuple[str, ...]
    requires: _Condition = ()


SECONDARY_RULES: tuple[_SecondaryRule, ...] = (
    _SecondaryRule(
        id="keep_retrieval",
        after=frozenset({"ready_to_tune"}),
        move=Move.RAG,
        requires=(("facts_change", frozenset({Answer.NOT_SURE})),),
        reads=("facts_change",),
        reason=(
            "It is not yet clear whether the facts change, so tune the behaviour but keep retrieval for "
            "current facts."
        ),
    ),
    _SecondaryRule(
        id="orchestrate_retrieval",
        after=frozenset({"changing_facts"}),
        move=Move.WORKFLOW,
        requires=(("multi_step", _ANY_YES),),
        reads=("multi_step",),
        reason="The work also spans several tools and approvals, so design the workflow around retrieval.",
    ),
    _SecondaryRule(
        id="tune_later",
        after=_SITUATION_RULES,
        move=Move.FINETUNE,
        requires=tuple((gate, _ANY_YES) for gate in HARD_GATES),
        reads=HARD_GATES,
        reason=(
            "The four core checklist items are all yes, so once the upstream fix is in, the narrow "
            "behaviour may deserve tuning."
        ),
    ),
    _SecondaryRule(
        id="vote_runner_up",
        after=_UPSTREAM_RULES,
        move=None,
        reads=HARD_GATES + SOFT_ITEMS,
        reason="{move} is the next most common fix among the checklist gaps.",
    ),
)


@dataclass(frozen=True)
class _Mistake:
    """A common mistake that applies when any (question id, answers) trigger matches an answer given."""

    text: str
    triggers: _Condition


_NOT_YES = frozenset({Answer.NO, Answer.NOT_SURE})

MISTAKES: tuple[_Mistake, ...] = (
    _Mistake(
        text=(
            "Tuning before fixing the workflow bakes vague prompts, messy sources and unclear rules into "
            "the model instead of solving them."
        ),
        triggers=(("multi_step", _ANY_YES), ("instructions_gap", _ANY_YES), ("narrow_task", _NOT_YES)),
    ),
    _Mistake(
        text=(
            "Training on inconsistent or low-quality labels teaches the model the same inconsistency, "
            "because it can only learn what the examples show."
        ),
        triggers=(("reviewers_agree", _NOT_YES), ("correct_examples", _NOT_YES)),
    ),
    _Mistake(
        text="Storing changing knowledge in model weights leaves the model stale; facts that change belong "
        "in retrieval.",
        triggers=(
            ("facts_change", frozenset({Answer.YES, Answer.NOT_SURE})),
            ("behaviour_not_knowledge", _NOT_YES),
        ),
    ),
    _Mistake(
        text="Skipping eval design and judging outputs by whether they look better lets regressions through.",
        triggers=(("heldout_set", _NOT_YES), ("known_metric", _NOT_YES)),
    ),
    _Mistake(
        text=(
            "Over-scoping the first project makes it costly and hard to debug; tune one narrow behaviour "
            "first."
        ),
        triggers=(("narrow_task", _NOT_YES),),
    ),
    _Mistake(
        text=(
            "Ignoring operational cost: deployment, monitoring, rollback and re-tuning when the task "
            "changes weigh as much as the training run."
        ),
        triggers=(("rollback_plan", _NOT_YES),),
    ),
)

# --- results -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Blocker:
    """An answer that stands in the way of fine-tuning, with what to do about it."""

    question_id: str
    answer: Answer
    text: str
    next_step: str


@dataclass(frozen=True)
class Recommendation:
    """The outcome of an interview, complete or partial.

    Attributes:
        primary: the best first move.
        secondary: a second move worth making, or None; never equal to `primary`.
        reasons: plain sentences on why the primary (and secondary) move was chosen.
        drivers: (question id, answer) pairs the deciding rules read, in question order.
        blockers: every answer that stands in the way of fine-tuning, in question order.
        mistakes: the common mistakes the answers point to, one sentence each.
        stopped_early: True when questions were left unanswered because no answer could change the outcome.
        unanswered: ids of the questions not answered, in question order.
    """

    primary: Move
    secondary: Move | None
    reasons: tuple[str, ...]
    drivers: tuple[tuple[str, Answer], ...]
    blockers: tuple[Blocker, ...]
    mistakes: tuple[str, ...]
    stopped_early: bool
    unanswered: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Convert to plain JSON-ready data.

        Returns:
            A dict with the same keys as the attributes; enums become their `.value`, tuples become
            lists, each driver becomes {"question_id", "answer"} and each blocker a dict of its fields.
        """
        return {
            "primary": self.primary.value,
            "secondary": self.secondary.value if self.secondary is not None else None,
            "reasons": list(self.reasons),
            "drivers": [{"question_id": qid, "answer": answer.value} for qid, answer in self.drivers],
            "blockers": [
                {
                    "question_id": blocker.question_id,
                    "answer": blocker.answer.value,
                    "text": blocker.text,
                    "next_step": blocker.next_step,
                }
                for blocker in self.blockers
            ],
            "mistakes": list(self.mistakes),
            "stopped_early": self.stopped_early,
            "unanswered": list(self.unanswered),
        }


# --- evaluation ----------------------------------------------------------------------------------------


class _Outcome(NamedTuple):
    primary_rule: _Rule
    primary: Move
    secondary_rule: _SecondaryRule | None
    secondary: Move | None
    ranking: tuple[tuple[Move, int], ...]  # the upstream vote, best first; empty unless it was used


def _holds(condition: _Condition, answers: Mapping[str, Answer]) -> bool:
    # A plain loop, not all(...): `is_decided` runs this in a tight loop and the generator costs ~2x.
    for qid, allowed in condition:  # noqa: SIM110
        if answers[qid] not in allowed:
            return False
    return True


def _rule_matches(rule: _Rule, answers: Mapping[str, Answer]) -> bool:
    if not _holds(rule.requires, answers):
        return False
    if rule.quota is None:
        return True
    ids, most = rule.quota
    misses = 0
    for qid in ids:
        if answers[qid] is not Answer.YES:
            misses += 1
    return misses <= most


def _upstream_ranking(answers: Mapping[str, Answer]) -> tuple[tuple[Move, int], ...]:
    totals: dict[Move, int] = {}
    for vote in UPSTREAM_VOTES:
        if answers[vote.question_id] is not Answer.YES:
            totals[vote.move] = totals.get(vote.move, 0) + vote.weight
    return tuple(sorted(totals.items(), key=lambda item: (-item[1], _TIE_RANK[item[0]])))


def _evaluate(answers: Mapping[str, Answer]) -> _Outcome:
    """Apply both tables to a complete answer map (every question id present).

    Returns a named tuple, which is cheap to build: `is_decided` calls this in a tight loop.
    """
    for rule in RULES:
        if _rule_matches(rule, answers):
            break
    else:  # pragma: no cover - the last rule has no conditions
        raise AssertionError("the decision table has no fallback rule")
    ranking: tuple[tuple[Move, int], ...] = ()
    if rule.move is None:
        ranking = _upstream_ranking(answers)
        primary = ranking[0][0]
    else:
        primary = rule.move
    for secondary_rule in SECONDARY_RULES:
        if rule.id not in secondary_rule.after or not _holds(secondary_rule.requires, answers):
            continue
        if secondary_rule.move is not None:
            move: Move | None = secondary_rule.move
        else:
            move = ranking[1][0] if len(ranking) > 1 else None
        if move is not None and move is not primary:
            return _Outcome(rule, primary, secondary_rule, move, ranking)
    return _Outcome(rule, primary, None, None, ranking)


def _checked(answers: Mapping[str, str]) -> dict[str, Answer]:
    """Validate ids and coerce values (plain strings are parsed; `Answer` is a `str`) into a fresh dict."""
    checked: dict[str, Answer] = {}
    for qid, value in answers.items():
        if qid not in _BY_ID:
            raise ValueError(f"unknown question id {qid!r}; valid ids are: {', '.join(QUESTION_IDS)}")
        try:
            checked[qid] = value if isinstance(value, Answer) else Answer.parse(value)
        except ValueError as exc:
            raise ValueError(f"question {qid!r}: {exc}") from None
    return checked


def _filled(answers: Mapping[str, Answer]) -> dict[str, Answer]:
    """Complete a partial answer map, reading every unanswered question as "not bad"."""
    return {q.id: answers.get(q.id, _UNANSWERED_READS_AS[q.kind]) for q in QUESTIONS}


def _key(answers: Mapping[str, Answer]) -> tuple[Move, Move | None]:
    _, primary, _, secondary, _ = _evaluate(answers)
    return primary, secondary


def _decided(given: Mapping[str, Answer]) -> bool:
    missing = [q for q in QUESTIONS if q.id not in given]
    if not missing:
        return True
    ids = [q.id for q in missing]
    completion = dict(given)
    first: tuple[Move, Move | None] | None = None
    for values in itertools.product(*(_COMPLETION_DOMAIN[q.kind] for q in missing)):
        completion.update(zip(ids, values, strict=True))
        key = _key(completion)
        if first is None:
            first = key
        elif key != first:
            return False
    return True


def is_decided(answers: Mapping[str, Answer]) -> bool:
    """Say whether the answers still to come can no longer change the outcome.

    Every completion of the unanswered questions is tried (situation questions over yes / no / not sure,
    checklist questions over yes / no, since not sure behaves exactly like no there).

    Args:
        answers: answers given so far, by question id.

    Returns:
        True when every completion gives the same (primary, secondary) pair, including when all questions
        are answered.

    Raises:
        ValueError: an unknown question id or an unreadable answer.
    """
    return _decided(_checked(answers))


def next_question(answers: Mapping[str, Answer]) -> Question | None:
    """Pick the next question to ask.

    Args:
        answers: answers given so far, by question id.

    Returns:
        The first unanswered question in interview order, or None when all are answered or the outcome
        can no longer change (see `is_decided`).

    Raises:
        ValueError: an unknown question id or an unreadable answer.
    """
    given = _checked(answers)
    if _decided(given):
        return None
    return next(q for q in QUESTIONS if q.id not in given)


def _reason(template: str, move: Move | None, misses: int) -> str:
    return template.format(move=move.value if move is not None else "", misses=misses)


def recommend(answers: Mapping[str, Answer]) -> Recommendation:
    """Turn the answers (all of them, or those given so far) into a recommendation.

    Unanswered questions are read as "not bad" (situation: no; checklist: yes), so an interview that
    stopped early gets the outcome it was decided on; they produce no drivers, blockers or mistakes.

    Args:
        answers: answers by question id.

    Returns:
        The `Recommendation`.

    Raises:
        ValueError: an unknown question id or an unreadable answer.
    """
    given = _checked(answers)
    outcome = _evaluate(_filled(given))
    misses = sum(given.get(vote.question_id, Answer.YES) is not Answer.YES for vote in UPSTREAM_VOTES)

    reasons = [_reason(outcome.primary_rule.reason, outcome.primary, misses)]
    if outcome.primary_rule.quota is not None:
        ids, _ = outcome.primary_rule.quota
        soft = sum(given.get(qid, Answer.YES) is not Answer.YES for qid in ids)
        if soft:
            reasons.append(
                f"Supporting checklist items still short of a yes: {soft} of {len(ids)}; close them "
                "before training (see the blockers)."
            )
    read = set(outcome.primary_rule.reads)
    if outcome.secondary_rule is not None:
        reasons.append(_reason(outcome.secondary_rule.reason, outcome.secondary, misses))
        read.update(outcome.secondary_rule.reads)
    if outcome.primary_rule.id in _UPSTREAM_RULES:
        read = {qid for qid in read if given.get(qid, Answer.YES) is not Answer.YES}

    drivers = tuple((qid, given[qid]) for qid in QUESTION_IDS if qid in read and qid in given)
    blockers = tuple(
        Blocker(question_id=q.id, answer=given[q.id], text=q.text, next_step=q.next_step)
        for q in QUESTIONS
        if q.id in given and given[q.id] in _BLOCKING_ANSWERS[q.kind]
    )
    mistakes = tuple(
        mistake.text
        for mistake in MISTAKES
        if any(qid in given and given[qid] in allowed for qid, allowed in mistake.triggers)
    )
    unanswered = tuple(qid for qid in QUESTION_IDS if qid not in given)
    return Recommendation(
        primary=outcome.primary,
        secondary=outcome.secondary,
        reasons=tuple(reasons),
        drivers=drivers,
        blockers=blockers,
        mistakes=mistakes,
        stopped_early=bool(unanswered) and _decided(given),
        unanswered=unanswered,
    )


def parse_answers(raw: Mapping[str, str]) -> dict[str, Answer]:
    """Validate answers read from a file or a form.

    Args:
        raw: answer strings by question id, e.g. {"narrow_task": "yes", "heldout_set": "not sure"}.

    Returns:
        The answers as `Answer` values, in interview order.

    Raises:
        ValueError: an unknown id (the message names it and lists the valid ids) or an unreadable value
            (the message names the question and the value).
    """
    checked = _checked(raw)
    return {qid: checked[qid] for qid in QUESTION_IDS if qid in checked}
