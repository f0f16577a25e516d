"""Shared by the prediction and pilot tests: a ticket-routing project with versions whose adapters
are real PEFT folders for the tiny model (made, not trained: what is asserted is serving, not
learning), and the evaluation a version carries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.core.db import session_scope
from runner.core.models import ModelVersion, Snapshot
from runner.data import projects
from tests.training_support import INSTRUCTIONS, LABELS

PROJECT = "ticket-router"


def make_adapter(base_model: Path, folder: Path, seed: int) -> Path:
    """A LoRA adapter for `base_model` with random (non-zero) weights, saved as training saves one."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_model))
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(str(folder))
    return folder


def make_project(
    engine,
    settings,
    *,
    base_model: str = "tiny",
    adapters: dict[int, Path] | None = None,
    accuracy: dict[int, float] | None = None,
    count: int = 2,
    reviewers: tuple[str, ...] = ("UALICE", "UBOB", "UCAROL"),
    channel_id: str = "CGENERAL",
) -> None:
    """The project with `count` candidate versions; v`n` evaluated at `accuracy[n]` when given."""
    with session_scope(engine) as session:
        project = projects.create_project(
            session,
            projects.ProjectSpec(
                name=PROJECT,
                task_type="classification",
                label_lines=LABELS,
                reviewers=list(reviewers),
                min_per_label=5,
                instructions=INSTRUCTIONS,
            ),
            owner_id="UALICE",
            channel_id=channel_id,
        )
        # A thread root the emulator never hands out (its timestamps start after 1700000000), so
        # that no message a test posts takes its place, to be overwritten by a tally refresh.
        project.root_ts = "1600000000.000100"
        session.add(project)
        session.add(Snapshot(id="f" * 64, project_id=project.id))
        session.commit()
        for number in range(1, count + 1):
            folder = (adapters or {}).get(number)
            if folder is None:
                folder = Path(settings.ftbot_data_dir) / "artifacts" / PROJECT / f"v{number}"
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "adapter_config.json").write_text("{}")
            session.add(
                ModelVersion(
                    project_id=project.id,
                    number=number,
                    snapshot_id="f" * 64,
                    base_model=base_model,
                    artifact_path=str(folder),
                    config={"quantize": False},
                    evaluation=evaluation(accuracy[number]) if accuracy and number in accuracy else None,
                )
            )


def evaluation(accuracy: float) -> dict[str, Any]:
    """The part of an evaluation report the pilot reads: the candidate's held-out accuracy."""
    return {
        "n_examples": 40,
        "headline_name": "accuracy",
        "systems": {"base": None, "production": None, "candidate": {"headline": accuracy}},
        "candidate": {"headline": accuracy},
    }


# --- driving a pilot through signed requests -----------------------------------------------------

TRUTH = {"invoice": "billing", "crash": "technical", "password": "account", "parcel": "shipping"}
LEGEND = {"billing": "one", "technical": "two", "account": "three", "shipping": "four"}


def right_label(text: str) -> str:
    """The queue a test ticket belongs to (each names one keyword of `TRUTH`)."""
    return next(label for word, label in TRUTH.items() if word in text)


def say(
    slack, channel: str, text: str, user: str = "UDAVE", *, event_id: str | None = None
) -> dict[str, Any]:
    """`user` posts a top-level message in `channel` (stored in the emulator, the event delivered)."""
    message = slack.emulator.post_user_message(channel, text, user)
    deliver_message(slack, channel, message, event_id=event_id)
    return message


def deliver_message(slack, channel: str, message: dict[str, Any], *, event_id: str | None = None) -> str:
    """Deliver the message event of `message` (again, for a redelivery); returns its event id."""
    event_id = event_id or f"Ev{message['ts'].replace('.', '')}"
    event = {
        "type": "message",
        "channel": channel,
        "user": message["user"],
        "text": message["text"],
        "ts": message["ts"],
        "channel_type": "channel",
    }
    assert slack.event(event, event_id=event_id).status == 200
    return event_id


def settled(engine, event_id: str) -> None:
    """Wait until the bot finished with event `event_id` (the inbox marks it done)."""
    from runner.core.models import EventStatus, ProcessedEvent
    from tests.training_support import wait_until

    def done() -> bool:
        with session_scope(engine) as session:
            row = session.get(ProcessedEvent, event_id)
            return row is not None and row.status == EventStatus.DONE

    wait_until(done, timeout=30, what=f"event {event_id} handled")


def suggestion(emulator, channel: str, message_ts: str) -> dict[str, Any] | None:
    """ftbot's suggestion in the thread of message `message_ts`."""
    return next(
        (
            m
            for m in emulator.messages(channel)
            if m.get("thread_ts") == message_ts
            and m["ts"] != message_ts
            and m.get("text", "").startswith("Suggestion")
        ),
        None,
    )


_reaction_ids = iter(range(1, 10**9))


def react(
    slack,
    engine,
    channel: str,
    ts: str,
    emoji: str,
    user: str,
    *,
    added: bool = True,
    event_id: str | None = None,
) -> str:
    """A reaction as Slack delivers it, waited for until the bot has handled it; returns the event id."""
    event_id = event_id or f"EvR{next(_reaction_ids):09d}"
    assert slack.react(channel, ts, emoji, user, added=added, event_id=event_id).status == 200
    settled(engine, event_id)
    return event_id
