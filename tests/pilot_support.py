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
        project.root_ts = "1700000000.000100"
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
