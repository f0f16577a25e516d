"""The package as pip installs it: the wheel carries the templates, data and migrations, renders a
message from a fresh virtual environment (not the source tree), and the bot's own requirements
leave the training libraries to the ``[train]`` extra.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile
from email.parser import HeaderParser
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
TRAIN_ONLY = {"torch", "transformers", "peft", "bitsandbytes"}
# What `runner.slack.render` needs at run time besides the wheel (pinned to this environment's versions,
# so pip resolves nothing new and a cached copy serves).
RENDER_DEPENDENCIES = ("jinja2", "pydantic", "pydantic-settings")


def _clean_env() -> dict[str, str]:
    """This process's environment without anything that would point Python at the source tree."""
    return {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"}}


def _run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=_clean_env(), timeout=120)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result


def test_bot_requirements_leave_training_libraries_to_the_extra() -> None:
    bot = {Requirement(r).name.lower() for r in PYPROJECT["project"]["dependencies"]}
    assert not bot & TRAIN_ONLY, f"`pip install .` (the bot) would pull {bot & TRAIN_ONLY}"
    train = {Requirement(r).name.lower() for r in PYPROJECT["project"]["optional-dependencies"]["train"]}
    assert train >= TRAIN_ONLY, "the GPU worker installs them with .[train]"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)])
    (built,) = out.glob("ftbot-*.whl")
    return built


def _source_files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


@pytest.mark.slow
def test_wheel_carries_templates_data_and_migrations(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = HeaderParser().parsestr(archive.read(metadata_name).decode())
        (entry_points_name,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        entry_points = archive.read(entry_points_name).decode()
    templates = {
        f"runner/templates/{p.relative_to(ROOT / 'templates').as_posix()}"
        for p in _source_files(ROOT / "templates")
    }
    assert any(t.endswith(".json.j2") for t in templates)
    assert templates <= names, f"templates missing from the wheel: {templates - names}"
    data = {p.relative_to(ROOT).as_posix() for p in _source_files(ROOT / "runner" / "data")}
    assert data and data <= names, f"runner/data missing from the wheel: {data - names}"
    migrations = {p.relative_to(ROOT).as_posix() for p in _source_files(ROOT / "runner" / "migrations")}
    assert migrations <= names, f"migrations missing from the wheel: {migrations - names}"
    assert not [n for n in names if n.split("/")[0] in {"tests", "templates", "deploy", "bench"}]
    assert "ftbot = bot.cli:main" in entry_points
    for line in metadata.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        if requirement.name.lower() in TRAIN_ONLY:
            assert requirement.marker is not None and "train" in str(requirement.marker), line


@pytest.mark.slow
def test_installed_wheel_renders_a_template_outside_the_source_tree(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    # A bare venv (no --system-site-packages), filled by this environment's pip through --python.
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    python = str(venv / "bin" / "python")
    pip = [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--disable-pip-version-check"]
    _run([*pip, "--no-deps", str(wheel)])
    _run([*pip, *(f"{name}=={version(name)}" for name in RENDER_DEPENDENCIES)])
    code = (
        "import json, runner\n"
        "from runner.slack.render import render, template_dir\n"
        "print(json.dumps({'runner': runner.__file__, 'templates': str(template_dir()),"
        " 'payload': render('notice.json.j2', text='hi')}))"
    )
    # -I: no current directory, PYTHONPATH or user site on sys.path; cwd is outside the checkout.
    result = json.loads(_run([python, "-I", "-c", code], cwd=tmp_path).stdout)
    for key in ("runner", "templates"):
        where = Path(result[key]).resolve()
        assert where.is_relative_to(venv.resolve()), f"{key} came from {where}, not the installed wheel"
        assert not where.is_relative_to(ROOT)
    assert result["payload"]["text"] == "hi"
    assert result["payload"]["blocks"], result["payload"]
