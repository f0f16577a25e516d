"""The TrainJob ftbot creates is valid against Kubeflow Trainer's published CRD (vendored in
tests/k8s/ with its source), and the examples shipped in deploy/k8s/trainjob/ are what it renders.

The CRD's openAPIV3Schema becomes a JSON Schema (`crd_json_schema`): ``x-kubernetes-int-or-string``
is an integer or a string, ``nullable`` adds null, ``x-kubernetes-list-type: set`` is uniqueItems,
and an object with properties refuses unknown fields (kubectl's strict field validation). What JSON
Schema cannot say is checked beside it (`kubernetes_checks`): the keys of ``x-kubernetes-list-type:
map`` lists are unique, and each CEL rule (``x-kubernetes-validations``) on a field the manifest
has is evaluated — every rule this CRD uses is known here; a new one fails the test until it is.
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from runner.core.config import Settings
from runner.core.trainconfig import TrainConfig
from runner.jobs import trainjob

ROOT = Path(__file__).resolve().parent.parent
CRD = Path(__file__).parent / "k8s" / "trainer.kubeflow.org_trainjobs.yaml"
EXAMPLES_DIR = ROOT / "deploy" / "k8s" / "trainjob"


def _script() -> Any:
    spec = importlib.util.spec_from_file_location(
        "render_trainjobs", ROOT / "scripts" / "render_trainjobs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def crd_schema() -> dict[str, Any]:
    """The CRD's openAPIV3Schema for v1alpha1, as published."""
    (crd,) = [d for d in yaml.safe_load_all(CRD.read_text()) if d]
    assert crd["kind"] == "CustomResourceDefinition" and crd["spec"]["names"]["kind"] == "TrainJob"
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def crd_json_schema(node: Any) -> Any:
    """An OpenAPI v3 structural schema (Kubernetes' dialect) as JSON Schema."""
    if isinstance(node, list):
        return [crd_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("description", "default", "format", "nullable"):
            continue
        if key == "properties":
            out[key] = {name: crd_json_schema(s) for name, s in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = crd_json_schema(value)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [crd_json_schema(s) for s in value]
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _cel(rule: str, value: Any) -> bool | None:
    """The CEL rules this CRD uses, on a newly created object (None: a transition rule, which only
    applies to updates)."""
    if rule == "self == oldSelf":
        return None
    if match := re.fullmatch(r"self >= (\d+)", rule):
        return bool(value >= int(match.group(1)))
    if match := re.fullmatch(r"has\(self\.(\w+)\)", rule):
        return match.group(1) in value
    if match := re.fullmatch(r"self in (\[.*\])", rule):
        return value in ast.literal_eval(match.group(1))
    if match := re.fullmatch(r"self == '' \|\| self\.matches\('(.*)'\)", rule):
        return value == "" or re.search(match.group(1), value) is not None
    if match := re.fullmatch(r"self\.metadata\.name\.matches\('(.*)'\)", rule):
        return re.search(match.group(1), value["metadata"]["name"]) is not None
    if match := re.fullmatch(r"size\(self\.metadata\.name\) <= (\d+)", rule):
        return len(value["metadata"]["name"]) <= int(match.group(1))
    raise AssertionError(f"a CEL rule this test does not know: {rule!r}; teach _cel to check it")


def kubernetes_checks(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """Problems JSON Schema cannot see: CEL rules and list-map keys, on every field present."""
    problems = []
    for validation in schema.get("x-kubernetes-validations", []):
        if _cel(validation["rule"], value) is False:
            problems.append(f"{path or '<root>'}: {validation['message']}")
    if schema.get("x-kubernetes-list-type") == "map" and isinstance(value, list):
        keys = [tuple(item.get(k) for k in schema["x-kubernetes-list-map-keys"]) for item in value]
        if len(set(keys)) != len(keys):
            problems.append(f"{path}: duplicate keys {keys}")
    if isinstance(value, dict):
        for name, item in value.items():
            sub = schema.get("properties", {}).get(name)
            if sub is None and isinstance(schema.get("additionalProperties"), dict):
                sub = schema["additionalProperties"]
            if sub is not None:
                problems += kubernetes_checks(sub, item, f"{path}.{name}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            problems += kubernetes_checks(schema["items"], item, f"{path}[{i}]")
    return problems


def problems_with(manifest: dict[str, Any]) -> list[str]:
    """Every reason the API server would refuse to create ``manifest`` (empty: none)."""
    schema = crd_schema()
    validator = jsonschema.Draft202012Validator(crd_json_schema(schema))
    found = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest)]
    return found + kubernetes_checks(schema, manifest)


def rendered(**overrides: str) -> dict[str, Any]:
    config = TrainConfig.from_overrides(TrainConfig(base_model="org/model"), {"nodes": "2", **overrides})
    return trainjob.render(
        Settings(ftbot_data_dir=Path("/data"), ftbot_multinode="k8s"),
        name="ftbot-run-7-0",
        run_id=7,
        attempt=0,
        config=config,
        spec=Path("/data/artifacts/p/.run-7.launch/spec.json"),
        deadline_s=3600,
    )


def test_the_crd_translation_keeps_what_kubernetes_checks() -> None:
    schema = crd_json_schema(crd_schema())
    trainer = schema["properties"]["spec"]["properties"]["trainer"]
    assert trainer["additionalProperties"] is False
    limits = trainer["properties"]["resourcesPerNode"]["properties"]["limits"]["additionalProperties"]
    assert limits["anyOf"] == [{"type": "integer"}, {"type": "string"}] and "pattern" in limits
    assert not re.search(r"x-kubernetes", repr(schema))


@pytest.mark.parametrize("overrides", [{"procs": "8"}, {"procs": "1", "nodes": "4"}])
def test_a_rendered_trainjob_is_valid_against_the_published_crd(overrides: dict[str, str]) -> None:
    manifest = rendered(**overrides)
    assert problems_with(manifest) == []
    trainer = manifest["spec"]["trainer"]
    assert trainer["numNodes"] == int(overrides.get("nodes", "2"))
    assert trainer["numProcPerNode"] == int(overrides["procs"])
    assert trainer["resourcesPerNode"]["limits"] == {"nvidia.com/gpu": int(overrides["procs"])}
    assert trainer["command"][:2] == ["torchrun", "--max-restarts=0"]
    assert trainer["command"][-1] == "/data/artifacts/p/.run-7.launch/spec.json"
    assert manifest["metadata"]["labels"]["ftbot.dev/run"] == "7"


def test_the_validation_refuses_what_the_api_server_refuses() -> None:
    """The checks can fail: each broken copy of a valid TrainJob is refused, for its reason."""
    good = rendered(procs="2")
    broken: list[tuple[str, Any]] = [
        (
            "numProcPerNode must be greater than or equal to 1",
            lambda m: m["spec"]["trainer"].update(numProcPerNode=0),
        ),
        ("Additional properties are not allowed ('gpus'", lambda m: m["spec"]["trainer"].update(gpus=2)),
        ("is not of type 'integer'", lambda m: m["spec"]["trainer"].update(numNodes="two")),
        ("metadata.name must match RFC 1035", lambda m: m["metadata"].update(name="Run_7")),
        ("'name' is a required property", lambda m: m["spec"]["runtimeRef"].pop("name")),
        ("does not match", lambda m: m["spec"]["trainer"]["resourcesPerNode"]["limits"].update(cpu="lots")),
        (
            "duplicate keys",
            lambda m: m["spec"]["trainer"]["env"].append({"name": "REDIS_URL", "value": "redis://x"}),
        ),
    ]
    for reason, change in broken:
        manifest = copy.deepcopy(good)
        change(manifest)
        found = problems_with(manifest)
        assert any(reason in p for p in found), (reason, found)


def test_the_shipped_examples_are_what_the_product_renders_and_valid() -> None:
    script = _script()
    shipped = sorted(p.name for p in EXAMPLES_DIR.glob("*.yaml"))
    assert shipped == sorted(script.EXAMPLES), "run scripts/render_trainjobs.py"
    for name in shipped:
        text = (EXAMPLES_DIR / name).read_text()
        assert yaml.safe_load(text) == script.render_example(name), f"{name}: run scripts/render_trainjobs.py"
        assert problems_with(yaml.safe_load(text)) == [], name
