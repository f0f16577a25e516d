"""The training options schema: bounds per field, base_model sources, and short refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.core.config import Settings
from runner.core.trainconfig import MAX_MESSAGE_CHARS, TrainConfig, base_model_problem

BASE = TrainConfig(base_model="org/model")

# field: (lowest accepted, highest accepted, just below, just above); None where unbounded.
BOUNDS = {
    "epochs": ("0", "100", "-1", "101"),  # 0: chosen from the data (auto_epochs)
    "lr": ("0", "1", "-0.1", "1.0001"),  # 0: chosen from the model (auto_lr)
    "lora_r": ("1", "512", "0", "513"),
    "lora_alpha": ("0.001", "1e6", "0", None),
    "lora_dropout": ("0", "0.999", "-0.01", "1"),
    "max_len": ("16", "32768", "15", "32769"),
    "grad_accum_steps": ("1", "1024", "0", "1025"),
    "warmup_ratio": ("0", "0.999", "-0.1", "1"),
    "weight_decay": ("0", "10", "-0.001", None),
    "max_grad_norm": ("0", "100", "-1", None),
    "seed": ("0", str(2**32 - 1), "-1", str(2**32)),
    "early_stopping_patience": ("0", "100", "-1", "101"),
    "eval_every_steps": ("0", "100000", "-1", "100001"),
    "max_steps": ("0", "1000000", "-1", "1000001"),
}


def overrides(**values: str) -> TrainConfig:
    # batch_tokens follows max_len so that the relation between them never masks a field's bound.
    if "max_len" in values:
        values.setdefault("batch_tokens", str(max(int(values["max_len"]), 16)))
    return TrainConfig.from_overrides(BASE, values)


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_each_field_accepts_its_range_and_refuses_past_it(name: str) -> None:
    low, high, below, above = BOUNDS[name]
    assert overrides(**{name: low}).to_dict()[name] == pytest.approx(float(low))
    assert overrides(**{name: high}).to_dict()[name] == pytest.approx(float(high))
    for bad in (below, above):
        if bad is None:
            continue
        with pytest.raises(ValueError, match=rf"{name} must be .*, got {bad}"):
            overrides(**{name: bad})


def test_batch_tokens_lies_between_max_len_and_a_million() -> None:
    assert overrides(max_len="512", batch_tokens="512").batch_tokens == 512
    assert overrides(batch_tokens=str(1_048_576)).batch_tokens == 1_048_576
    with pytest.raises(ValueError, match=r"batch_tokens must be at most 1048576, got 1048577"):
        overrides(batch_tokens="1048577")
    with pytest.raises(ValueError, match=r"batch_tokens \(256\) must be at least max_len \(512\)"):
        overrides(max_len="512", batch_tokens="256")


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("lr", "nan", "lr='nan': expected a finite number"),
        ("lr", "inf", "lr='inf': expected a finite number"),
        ("lora_alpha", "-inf", "lora_alpha='-inf': expected a finite number"),
        ("seed", "1e3", "seed='1e3': expected a whole number"),
        ("quantize", "perhaps", "quantize='perhaps': expected true or false"),
    ],
)
def test_values_that_do_not_parse_are_named(name: str, text: str, expected: str) -> None:
    with pytest.raises(ValueError) as caught:
        overrides(**{name: text})
    assert expected in str(caught.value)


def test_constructing_an_invalid_config_fails_and_a_valid_one_is_frozen() -> None:
    with pytest.raises(ValueError, match="seed must be at most 4294967295"):
        TrainConfig(base_model="org/model", seed=2**64)
    with pytest.raises(ValueError, match="unknown key 'epoch' \\(did you mean epochs\\?\\)"):
        TrainConfig(base_model="org/model", epoch=3)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        BASE.epochs = 5  # type: ignore[misc]
    assert TrainConfig(**BASE.to_dict()) == BASE
    assert str(TrainConfig.model_fields["epochs"].description).startswith(
        "Passes over the training examples (early stopping may end sooner); 0: chosen from"
    )


def test_unknown_keys_are_listed_briefly_with_the_closest_names() -> None:
    many = {f"key_{i}": "1" for i in range(400)} | {"epoch": "3", "lora_rank": "8", "x" * 5000: "1"}
    with pytest.raises(ValueError) as caught:
        TrainConfig.from_overrides(BASE, many)
    message = str(caught.value)
    assert message.startswith("invalid training overrides (403 problems):")
    assert "unknown key 'epoch' (did you mean epochs?)" in message
    assert "unknown key 'lora_rank' (did you mean lora_r" in message  # close names come first
    assert "and 398 more unknown keys" in message
    assert message.count("unknown key ") == 5 and "x" * 50 not in message
    assert len(message) <= MAX_MESSAGE_CHARS


def test_every_field_wrong_at_once_still_gives_a_short_message() -> None:
    values = {name: "z" * 10_000 for name in TrainConfig.model_fields} | {f"k{i}": "1" for i in range(400)}
    with pytest.raises(ValueError) as caught:
        TrainConfig.from_overrides(BASE, values)
    message = str(caught.value)
    assert len(message) <= MAX_MESSAGE_CHARS
    assert (
        f"({400 + len(TrainConfig.model_fields)} problems)" in message and "more" in message.splitlines()[-1]
    )


@pytest.mark.parametrize(
    "value",
    ["smollm2-135m", "tiny_model.v2", "HuggingFaceTB/SmolLM2-135M-Instruct", "Qwen/Qwen2.5-0.5B-Instruct"],
)
def test_base_model_names_and_hub_ids_are_accepted(value: str) -> None:
    assert base_model_problem(value, {"FTBOT_DATA_DIR": Path("/data")}) is None
    assert TrainConfig.from_overrides(BASE, {"base_model": value}).base_model == value


@pytest.mark.parametrize(
    "value",
    [
        "/etc/passwd",
        "../x",
        "./model",
        "model/../../etc",
        "org/name/extra",
        "org/..",
        "https://evil/x",
        "http://host/model",
        "file:///etc/passwd",
        "hf://org/name",
        "~/models/x",
        "SmolLM2",  # a pulled name is lowercase
        "/data/models/../../etc",
        "/data\x00/x",
        "a" * 600,
    ],
)
def test_base_model_urls_and_other_paths_are_refused(value: str) -> None:
    roots = {"FTBOT_MODELS_DIR": Path("/data/models"), "FTBOT_DATA_DIR": Path("/data")}
    problem = base_model_problem(value, roots)
    assert problem is not None and "FTBOT_MODELS_DIR (/data/models) or FTBOT_DATA_DIR (/data)" in problem
    assert "pulled model name" in problem and "org/name" in problem
    with pytest.raises(ValueError, match="is not accepted"):
        TrainConfig.from_overrides(BASE, {"base_model": value}, local_roots=roots)


def test_local_folders_only_under_the_allowed_roots(tmp_path: Path) -> None:
    settings = Settings(ftbot_data_dir=tmp_path / "data")
    assert settings.ftbot_models_dir == tmp_path / "data" / "models"
    inside = settings.ftbot_models_dir / "tiny"
    assert base_model_problem(str(inside), settings.model_roots) is None
    assert base_model_problem(str(tmp_path / "data" / "other"), settings.model_roots) is None
    assert base_model_problem(str(tmp_path / "outside"), settings.model_roots) is not None
    # A link inside a root that points out of it is judged by where it leads.
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "escape").symlink_to(tmp_path / "outside")
    assert base_model_problem(str(tmp_path / "data" / "escape"), settings.model_roots) is not None
    # Without roots (a config built in code, as the worker and the benchmarks do) any absolute folder.
    assert base_model_problem(str(tmp_path / "outside")) is None


def test_models_dir_follows_the_data_dir_unless_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FTBOT_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.delenv("FTBOT_MODELS_DIR", raising=False)
    assert Settings().ftbot_models_dir == tmp_path / "d" / "models"
    monkeypatch.setenv("FTBOT_MODELS_DIR", str(tmp_path / "m"))
    assert Settings().ftbot_models_dir == tmp_path / "m"
    assert Settings().model_roots == {"FTBOT_MODELS_DIR": tmp_path / "m", "FTBOT_DATA_DIR": tmp_path / "d"}
