"""Readiness interviews: persistence and state changes around the pure decision engine.

Functions take the caller's session and never commit: the caller's unit of work does. Every change
is a compare-and-set on the interview's `step` (a version number carried in each button), so a
double press, a press on an old message, or two replicas handling presses at once apply one change
and refuse the others with a reason the person can read.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import Session, col, select

from runner.core.exceptions import InterviewError, InterviewFinished, NotInterviewee, StaleAction
from runner.core.models import Interview, InterviewAnswer, InterviewStatus, utcnow
from runner.interview import readiness
from runner.interview.readiness import Answer, Question, Recommendation


@dataclass(frozen=True)
class InterviewState:
    """An interview as the listeners render it."""

    interview: Interview
    answers: dict[str, Answer]
    question: Question | None
    recommendation: Recommendation | None

    @property
    def finished(self) -> bool:
        return self.interview.status == InterviewStatus.FINISHED

    @property
    def number(self) -> int:
        """1-based position of the current question among all questions."""
        return len(self.answers) + 1


def _active_answers(session: Session, interview_id: int) -> dict[str, Answer]:
    rows = session.exec(
        select(InterviewAnswer)
        .where(InterviewAnswer.interview_id == interview_id, col(InterviewAnswer.retracted_at).is_(None))
        .order_by(col(InterviewAnswer.id))
    ).all()
    return {row.question_id: Answer(row.answer) for row in rows}


def _state(session: Session, interview: Interview) -> InterviewState:
    assert interview.id is not None
    answers = _active_answers(session, interview.id)
    if interview.status == InterviewStatus.FINISHED:
        return InterviewState(interview, answers, None, readiness.recommend(answers))
    return InterviewState(interview, answers, readiness.next_question(answers), None)


def load(session: Session, interview_id: int) -> InterviewState:
    """The interview's current state.

    Raises:
        InterviewError: no interview has this id.
    """
    interview = session.get(Interview, interview_id)
    if interview is None:
        raise InterviewError(f"Interview {interview_id} does not exist (it may have been removed).")
    return _state(session, interview)


def start(
    session: Session,
    *,
    channel_id: str,
    user_id: str,
    team_id: str = "",
    topic: str = "",
    source: str = "slash",
) -> InterviewState:
    """Open a new interview for `user_id` in `channel_id`.

    Returns:
        Its state, with the first question.
    """
    interview = Interview(
        channel_id=channel_id, user_id=user_id, team_id=team_id, topic=topic.strip()[:500], source=source
    )
    session.add(interview)
    session.flush()
    return _state(session, interview)


def set_messages(
    session: Session, interview_id: int, *, thread_ts: str | None = None, question_ts: str | None = None
) -> None:
    """Remember where the interview's thread and its question message are in Slack."""
    interview = session.get(Interview, interview_id)
    if interview is None:
        return
    if thread_ts is not None:
        interview.thread_ts = thread_ts
    if question_ts is not None:
        interview.question_ts = question_ts
    session.add(interview)


def _claim_step(session: Session, interview_id: int, user_id: str, step: int) -> Interview:
    """Check who may act, then advance `step` only if it is still the one the button carried."""
    interview = session.get(Interview, interview_id)
    if interview is None:
        raise InterviewError(f"Interview {interview_id} does not exist.")
    if interview.user_id != user_id:
        raise NotInterviewee(f"This interview belongs to <@{interview.user_id}>; only they can answer it.")
    if interview.status == InterviewStatus.FINISHED:
        raise InterviewFinished("This interview is finished; its recommendation is in the thread.")
    claimed = session.execute(
        update(Interview)
        .where(
            col(Interview.id) == interview_id,
            col(Interview.step) == step,
            col(Interview.status) == InterviewStatus.OPEN,
        )
        .values(step=step + 1)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleAction(
            "That button was already used; the current question is the latest one in the thread."
        )
    session.refresh(interview)
    return interview


def answer(
    session: Session, *, interview_id: int, user_id: str, step: int, question_id: str, value: Answer
) -> InterviewState:
    """Record `value` for `question_id` and move on, finishing when the outcome is decided.

    Raises:
        NotInterviewee, InterviewFinished, StaleAction: the press is refused; nothing changed.
    """
    interview = _claim_step(session, interview_id, user_id, step)
    expected = readiness.next_question(_active_answers(session, interview_id))
    if expected is None or expected.id != question_id:
        raise StaleAction("That question was already answered; the current one is the latest in the thread.")
    session.add(
        InterviewAnswer(
            interview_id=interview_id, question_id=question_id, answer=value.value, user_id=user_id
        )
    )
    session.flush()
    answers = _active_answers(session, interview_id)
    if readiness.next_question(answers) is None:
        result = readiness.recommend(answers)
        interview.status = InterviewStatus.FINISHED
        interview.primary = result.primary.value
        interview.secondary = result.secondary.value if result.secondary else None
        interview.result = result.to_dict()
        interview.finished_at = utcnow()
        session.add(interview)
    session.flush()
    return _state(session, interview)


def back(session: Session, *, interview_id: int, user_id: str, step: int) -> InterviewState:
    """Take back the last answer so its question is asked again.

    Raises:
        InterviewError: there is no answer to take back (or the press is refused as in `answer`).
    """
    interview = _claim_step(session, interview_id, user_id, step)
    last = session.exec(
        select(InterviewAnswer)
        .where(InterviewAnswer.interview_id == interview_id, col(InterviewAnswer.retracted_at).is_(None))
        .order_by(col(InterviewAnswer.id).desc())
    ).first()
    if last is None:
        raise InterviewError("There is no earlier answer to change yet.")
    last.retracted_at = utcnow()
    session.add(last)
    session.flush()
    return _state(session, interview)


def restart(session: Session, *, interview_id: int, user_id: str, step: int) -> InterviewState:
    """Take back every answer and start from the first question."""
    interview = _claim_step(session, interview_id, user_id, step)
    now = utcnow()
    session.execute(
        update(InterviewAnswer)
        .where(
            col(InterviewAnswer.interview_id) == interview_id,
            col(InterviewAnswer.retracted_at).is_(None),
        )
        .values(retracted_at=now)
    )
    return _state(session, interview)


def history(session: Session, *, channel_id: str, limit: int = 20) -> list[Interview]:
    """The channel's most recent interviews, newest first."""
    return list(
        session.exec(
            select(Interview)
            .where(Interview.channel_id == channel_id)
            .order_by(col(Interview.created_at).desc(), col(Interview.id).desc())
            .limit(limit)
        ).all()
    )
