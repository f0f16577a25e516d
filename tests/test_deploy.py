"""The deployment files under deploy/, checked by parsing (no container engine or cluster here).

Each check ties a file back to the code it deploys: variable names to `runner.core.config.Settings`,
and the variables a command cannot start without to the `settings.require(...)` calls in
`bot/cli/` (read from its source), plus a short table of requirements enforced elsewhere,
itself checked against the source.
"""

from __future__ import annotations

import ast
import re
import shlex
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from runner.core.config import PLACEHOLDERS, Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / "ftbot.env.example"
SECRET_TEMPLATE = "secret.example.yaml"

SETTINGS_VARS = {name.upper() for name in Settings.model_fields}
# Variables the deployment files may set that ftbot itself does not read, and who reads them.
NOT_SETTINGS = {
    "HF_TOKEN": "huggingface_hub, in the worker (gated models)",
    "POSTGRES_PASSWORD": "the compose file's postgres service",
}
# Requirements enforced outside `bot/cli/`: ftbot subcommand → field → (module, function) whose
# source must still read ``settings.<field>`` (checked below, so a stale row fails).
EXTRA_REQUIRED: dict[str, dict[str, tuple[str, str]]] = {
    "worker": {"ftbot_base_model": ("runner/jobs/runs.py", "resolve_config")},
}
TRAIN_ONLY = ("torch", "transformers", "peft", "bitsandbytes")
REAL_TOKEN = re.compile(r"xox[abpe]-\d|xapp-\d")


# --- what the code requires ------------------------------------------------------------------


def _cli_require_calls() -> list[tuple[str, str, set[str]]]:
    """(function, purpose, field names) for every ``settings.require(...)`` call in bot/cli/."""
    found = []
    trees = [ast.parse(path.read_text()) for path in sorted((ROOT / "bot" / "cli").glob("*.py"))]
    for func in (node for tree in trees for node in ast.walk(tree)):
        if not isinstance(func, ast.FunctionDef):
            continue
        for node in ast.walk(func):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "require"
            ):
                names = {str(a.value) for a in node.args if isinstance(a, ast.Constant)}
                purpose = next(k.value for k in node.keywords if k.arg == "purpose")
                assert isinstance(purpose, ast.Constant), "purpose= must be a literal"
                found.append((func.name, str(purpose.value), names))
    return found


def _argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def required_for(command: str | list[str]) -> set[str]:
    """The variables `ftbot …` as run by `command` cannot start without (upper-case).

    A require call's purpose reads like the command line it guards (``"ftbot serve"``,
    ``"ftbot serve --socket"``, one per branch of the command); the call that applies is the one
    naming the same subcommand with the most flags, all of them present in `command`.
    """
    argv = _argv(command)
    assert argv[0] == "ftbot", argv
    matching: dict[int, set[str]] = {}
    for _func, purpose, names in _cli_require_calls():
        words = purpose.split()
        if words[:2] == ["ftbot", argv[1]] and all(flag in argv for flag in words[2:]):
            matching.setdefault(len(words), set()).update(names)
    required = matching[max(matching)] if matching else set()
    required |= set(EXTRA_REQUIRED.get(argv[1], {}))
    return {name.upper() for name in required}


def test_require_calls_are_read_from_the_cli() -> None:
    calls = {purpose: names for _func, purpose, names in _cli_require_calls()}
    # The parser must find the calls it is meant to find; an empty result would pass everything.
    assert "ftbot serve" in calls, calls
    assert calls["ftbot serve"] <= set(Settings.model_fields)
    assert required_for(["ftbot", "serve"]) >= {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"}
    assert "SLACK_SIGNING_SECRET" not in required_for(["ftbot", "serve", "--socket"])


@pytest.mark.parametrize(
    ("command", "field", "where"),
    [(cmd, field, where) for cmd, fields in EXTRA_REQUIRED.items() for field, where in fields.items()],
)
def test_extra_requirements_match_the_code(command: str, field: str, where: tuple[str, str]) -> None:
    path, function = where
    assert field in Settings.model_fields
    tree = ast.parse((ROOT / path).read_text())
    body = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function)
    reads = {n.attr for n in ast.walk(body) if isinstance(n, ast.Attribute)}
    assert field in reads, f"{path}:{function} no longer reads settings.{field}; update EXTRA_REQUIRED"


# --- docker compose --------------------------------------------------------------------------


class MissingVariable(Exception):
    """A ``${VAR:?message}`` whose variable is unset or empty."""


def _closing_brace(text: str, start: int) -> int:
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return i
    raise ValueError(f"unbalanced braces in {text!r}")


def _expand(expr: str, env: dict[str, str]) -> str:
    match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", expr, re.S)
    assert match, f"not a compose variable expression: ${{{expr}}}"
    name, op, arg = match.groups()
    value = env.get(name)
    unset = value is None or (op is not None and op.startswith(":") and value == "")
    if op in (":-", "-"):
        return interpolate(arg, env) if unset else str(value)
    if op in (":?", "?"):
        if unset:
            raise MissingVariable(f"{name}: {interpolate(arg, env)}")
        return str(value)
    if op in (":+", "+"):
        return "" if unset else interpolate(arg, env)
    return value or ""


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable interpolation: ``$$``, ``$VAR``, ``${VAR}``, ``:-``/``-``, ``:?``/``?``,
    ``:+``/``+``, nested in defaults."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            end = _closing_brace(text, i + 1)
            out.append(_expand(text[i + 2 : end], env))
            i = end + 1
        elif match := re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)", text[i:]):
            out.append(env.get(match.group(1), ""))
            i += match.end()
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def interpolate_all(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {k: interpolate_all(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate_all(v, env) for v in node]
    return node


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _ftbot_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in _services(compose).items() if _argv(s.get("command", []))[:1] == ["ftbot"]}


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _compose_required(compose: dict[str, Any]) -> set[str]:
    """Every variable the compose file marks required (``${VAR:?…}`` or ``${VAR?…}``)."""
    return {m for text in _strings(compose) for m in re.findall(r"\$\{([A-Za-z_]\w*):?\?", text)}


def _full_env(compose: dict[str, Any]) -> dict[str, str]:
    return {name: f"value-of-{name.lower()}" for name in _compose_required(compose)}


def test_compose_has_every_service(compose: dict[str, Any]) -> None:
    services = _services(compose)
    assert set(services) == {
        "redis",
        "postgres",
        "migrate",
        "bot",
        "event-worker",
        "worker",
        "predict-worker",
    }
    assert services["redis"]["image"].split(":")[1].startswith("7")
    assert services["postgres"]["image"].split(":")[1].startswith("16")
    assert _argv(services["migrate"]["command"]) == ["ftbot", "db", "upgrade"]
    assert _argv(services["bot"]["command"]) == ["ftbot", "serve", "--host", "0.0.0.0", "--port", "3000"]
    assert _argv(services["event-worker"]["command"]) == ["ftbot", "event-worker"]
    assert _argv(services["worker"]["command"]) == ["ftbot", "worker"]
    assert _argv(services["predict-worker"]["command"]) == ["ftbot", "worker", "--queues", "predict"]
    assert any(str(p).split(":")[-1] == "3000" for p in services["bot"]["ports"])


def test_compose_builds_from_the_repository_root(compose: dict[str, Any]) -> None:
    expected = {
        "migrate": "Dockerfile.bot",
        "bot": "Dockerfile.bot",
        "worker": "Dockerfile.worker",
        "predict-worker": "Dockerfile.worker",
    }
    for name, dockerfile in expected.items():
        build = _services(compose)[name]["build"]
        assert (DEPLOY / build["context"]).resolve() == ROOT
        assert (ROOT / build["dockerfile"]).resolve() == DEPLOY / dockerfile


def _healthcheck(service: dict[str, Any]) -> str:
    check = service.get("healthcheck") or {}
    assert not check.get("disable"), "health check disabled"
    test = check["test"]
    return " ".join(test) if isinstance(test, list) else test


def test_compose_health_checks(compose: dict[str, Any]) -> None:
    services = _services(compose)
    assert "redis-cli ping" in _healthcheck(services["redis"])
    assert "pg_isready" in _healthcheck(services["postgres"])
    bot_check = _healthcheck(services["bot"])
    assert "/healthz" in bot_check and ":3000" in bot_check
    assert any(":/var/lib/postgresql/data" in v for v in services["postgres"]["volumes"])


def test_compose_depends_on_is_health_gated(compose: dict[str, Any]) -> None:
    services = _services(compose)
    gated = {"redis": "service_healthy", "postgres": "service_healthy"}
    migrate_done = {"migrate": "service_completed_successfully"}
    expected = {
        "migrate": {"postgres": "service_healthy"},
        "bot": gated | migrate_done,
        "worker": gated | migrate_done,
        "predict-worker": gated | migrate_done,
    }
    for name, wanted in expected.items():
        conditions = {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}
        assert conditions == wanted, name
    for name, service in services.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            if spec["condition"] == "service_healthy":
                _healthcheck(services[dep])  # the dependency must have a health check
            else:
                assert spec["condition"] == "service_completed_successfully", (name, dep)
                assert services[dep].get("restart") == "no", f"{dep} must run once"


def test_compose_worker_reserves_one_nvidia_gpu(compose: dict[str, Any]) -> None:
    services = _services(compose)
    for name in ("worker", "predict-worker"):
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert [(d["driver"], d["count"], d["capabilities"]) for d in devices] == [("nvidia", 1, ["gpu"])]
    for name in set(services) - {"worker", "predict-worker"}:
        assert "deploy" not in services[name], f"{name} must not reserve devices"


def test_compose_required_variables_follow_the_code(compose: dict[str, Any]) -> None:
    for name, service in _ftbot_services(compose).items():
        env = _environment(service)
        for var in required_for(service["command"]):
            assert var in env, f"{name} does not set {var}"
            assert re.fullmatch(rf"\$\{{{var}:\?.+\}}", env[var]), (
                f"{name}: {var} must be ${{{var}:?message}}"
            )
    postgres = _environment(_services(compose)["postgres"])
    assert re.fullmatch(r"\$\{POSTGRES_PASSWORD:\?.+\}", postgres["POSTGRES_PASSWORD"])


def test_compose_refuses_to_start_without_each_required_variable(compose: dict[str, Any]) -> None:
    full = _full_env(compose)
    assert "${" not in str(interpolate_all(compose, full))
    for var in sorted(full):
        env = {k: v for k, v in full.items() if k != var}
        with pytest.raises(MissingVariable, match=rf"^{var}: .*\S"):
            interpolate_all(compose, env)
        with pytest.raises(MissingVariable, match=rf"^{var}: "):
            interpolate_all(compose, {**env, var: ""})


def test_compose_defaults_point_at_the_services(compose: dict[str, Any]) -> None:
    resolved = interpolate_all(compose, _full_env(compose))
    services = resolved["services"]
    postgres = _environment(services["postgres"])
    for name in _ftbot_services(compose):
        env = _environment(services[name])
        database = urlsplit(env["DATABASE_URL"])
        assert database.scheme.startswith("postgres") and database.hostname == "postgres", name
        assert database.username == postgres["POSTGRES_USER"]
        assert database.password == postgres["POSTGRES_PASSWORD"]
        assert database.path == "/" + postgres["POSTGRES_DB"]
        assert Settings(database_url=env["DATABASE_URL"]).sqlalchemy_url.startswith("postgresql+psycopg://")
        assert urlsplit(env["REDIS_URL"]).hostname == "redis", name
    # A value from the environment still wins over the defaults.
    override = interpolate_all(compose, {**_full_env(compose), "REDIS_URL": "redis://elsewhere:6379/1"})
    assert _environment(override["services"]["worker"])["REDIS_URL"] == "redis://elsewhere:6379/1"


def test_compose_bot_and_worker_share_the_data_volume(compose: dict[str, Any]) -> None:
    services = _services(compose)
    sources = {}
    for name in _ftbot_services(compose):
        data_dir = _environment(services[name])["FTBOT_DATA_DIR"]
        mounts = dict(reversed(v.split(":")[:2]) for v in services[name]["volumes"])
        assert data_dir in mounts, f"{name} mounts nothing at FTBOT_DATA_DIR={data_dir}"
        sources[name] = mounts[data_dir]
    assert sources["bot"] == sources["worker"]
    assert sources["bot"] in compose["volumes"], "a named volume, not a path on one side"


def test_compose_sets_only_known_variables(compose: dict[str, Any]) -> None:
    for name, service in _ftbot_services(compose).items():
        unknown = set(_environment(service)) - SETTINGS_VARS - set(NOT_SETTINGS)
        assert not unknown, f"{name} sets variables no one reads: {unknown}"
        env_files = service.get("env_file") or []
        assert [f["path"] if isinstance(f, dict) else f for f in env_files] == [".env"], name
    assert ".env" in (DEPLOY / ".gitignore").read_text().split(), "deploy/.env must stay out of git"


# --- Dockerfiles -----------------------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines = [ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), " ".join(rest.split())))
    return found


def _args(path: Path) -> dict[str, str]:
    return dict(arg.split("=", 1) for kw, arg in instructions(path) if kw == "ARG" and "=" in arg)


def _from_images(path: Path) -> list[str]:
    args = _args(path)
    images = []
    for kw, rest in instructions(path):
        if kw == "FROM":
            image = [w for w in rest.split() if not w.startswith("--")][0]
            images.append(re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image))
    return images


def _installs(path: Path) -> list[str]:
    return [
        rest for kw, rest in instructions(path) if kw == "RUN" and re.search(r"\bpip\b.* install\b", rest)
    ]


def _json_form(path: Path, keyword: str) -> list[str]:
    (rest,) = [rest for kw, rest in instructions(path) if kw == keyword][-1:]
    return yaml.safe_load(rest)


def _user(path: Path) -> str:
    return [rest for kw, rest in instructions(path) if kw == "USER"][-1]


def test_bot_image_installs_ftbot_without_training_libraries() -> None:
    path = DEPLOY / "Dockerfile.bot"
    assert all(image.startswith("python:3.11-slim") for image in _from_images(path))
    installs = _installs(path)
    assert any(re.search(r"pip install( -\S+)* \.$", run) for run in installs), installs
    for _kw, rest in instructions(path):
        assert "[train]" not in rest
        assert not any(re.search(rf"\b{lib}\b", rest) for lib in TRAIN_ONLY), rest
    assert _json_form(path, "CMD")[:2] == ["ftbot", "serve"]
    assert "--socket" not in _json_form(path, "CMD")
    (healthcheck,) = [rest for kw, rest in instructions(path) if kw == "HEALTHCHECK"]
    assert "127.0.0.1:3000/healthz" in healthcheck


def test_worker_image_installs_cuda_torch_then_the_train_extra() -> None:
    path = DEPLOY / "Dockerfile.worker"
    (image,) = _from_images(path)
    assert image.startswith("nvidia/cuda:") and "runtime" in image
    runs = [rest for kw, rest in instructions(path) if kw == "RUN"]
    assert any("python3.11" in run for run in runs)
    installs = _installs(path)
    torch_at = next(i for i, run in enumerate(installs) if "torch==" in run and "--index-url" in run)
    train_at = next(i for i, run in enumerate(installs) if '".[train]"' in run or " .[train]" in run)
    assert torch_at < train_at, "torch (CUDA build) must be installed before .[train]"
    args = _args(path)
    assert args["TORCH_INDEX_URL"].startswith("https://download.pytorch.org/whl/cu")
    train = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["train"]
    torch_range = next(r for r in train if re.match(r"torch\b", r))
    assert Version(args["TORCH_VERSION"]) in SpecifierSet(torch_range.removeprefix("torch"))
    assert _json_form(path, "CMD") == ["ftbot", "worker"]


def test_images_run_as_the_same_numeric_non_root_user() -> None:
    users = {_user(DEPLOY / name) for name in ("Dockerfile.bot", "Dockerfile.worker")}
    assert len(users) == 1
    uid = users.pop().split(":")[0]
    assert uid.isdigit() and int(uid) > 0, "Kubernetes verifies runAsNonRoot only for a numeric USER"


def _ignore_patterns(dockerfile: Path) -> list[str]:
    path = dockerfile.with_name(dockerfile.name + ".dockerignore")
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def _ignored(relative: str, patterns: list[str]) -> bool:
    """Whether a .dockerignore drops `relative` (a path or any folder above it; last match wins)."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for raw in patterns:
        pattern = raw.removeprefix("!").strip("/")
        variants = {pattern, pattern.removeprefix("**/")}
        if any(fnmatch(prefix, v) for v in variants for prefix in prefixes):
            ignored = not raw.startswith("!")
    return ignored


@pytest.mark.parametrize("name", ["Dockerfile.bot", "Dockerfile.worker"])
def test_images_copy_what_the_wheel_needs_and_the_context_keeps_it(name: str) -> None:
    dockerfile = DEPLOY / name
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wheel = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {"pyproject.toml", pyproject["project"]["readme"], *wheel["packages"], *wheel["force-include"]}
    copied = set()
    for kw, rest in instructions(dockerfile):
        words = [w for w in rest.split() if not w.startswith("--")]
        if kw == "COPY" and not rest.startswith("--from"):
            copied |= {w.rstrip("/") for w in words[:-1]}
    assert needed <= copied, f"{name} does not copy {needed - copied}"
    patterns = _ignore_patterns(dockerfile)
    for source in copied:
        assert (ROOT / source).exists(), source
        files = [ROOT / source] if (ROOT / source).is_file() else (ROOT / source).rglob("*")
        for file in (f for f in files if f.is_file() and "__pycache__" not in f.parts):
            relative = file.relative_to(ROOT).as_posix()
            assert not _ignored(relative, patterns), f"{name}.dockerignore drops {relative}"
    for heavy in (".venv", ".git", "tests/conftest.py", "deploy/.env", "runner/__pycache__/x.pyc"):
        assert _ignored(heavy, patterns), f"{name}.dockerignore keeps {heavy}"


# --- Kubernetes ------------------------------------------------------------------------------


def k8s_documents() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path.name, doc


@pytest.fixture(scope="module")
def k8s() -> list[tuple[str, dict[str, Any]]]:
    return list(k8s_documents())


def _kind(k8s: list[tuple[str, dict[str, Any]]], kind: str) -> list[dict[str, Any]]:
    return [doc for _file, doc in k8s if doc["kind"] == kind]


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def _workload(
    k8s: list[tuple[str, dict[str, Any]]], kind: str, subcommand: str, *flags: str
) -> dict[str, Any]:
    """The one workload running ``ftbot <subcommand>``, with exactly `flags` when it is a worker."""
    (doc,) = [
        d
        for d in _kind(k8s, kind)
        if _argv(_containers(d)[0]["command"])[1:2] == [subcommand]
        and (subcommand != "worker" or _argv(_containers(d)[0]["command"])[2:] == list(flags))
    ]
    return doc


def _port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p.get("name") == port)


def test_every_manifest_is_valid_yaml_with_kind_and_name(k8s: list[tuple[str, dict[str, Any]]]) -> None:
    files = {path.name for path in K8S.glob("*.yaml")}
    assert {f for f, _doc in k8s} == files
    for file, doc in k8s:
        assert doc.get("apiVersion") and doc.get("kind"), file
        if doc["kind"] != "Kustomization":
            assert doc["metadata"]["name"], file


def test_kustomization_applies_every_manifest_but_the_secret_template(
    k8s: list[tuple[str, dict[str, Any]]],
) -> None:
    (kustomization,) = _kind(k8s, "Kustomization")
    files = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml", SECRET_TEMPLATE}
    assert set(kustomization["resources"]) == files
    images = {i["name"] for i in kustomization["images"]}
    used = {c["image"] for kind in ("Deployment", "Job") for d in _kind(k8s, kind) for c in _containers(d)}
    assert used <= images


def test_bot_deployment_probes_and_resources(k8s: list[tuple[str, dict[str, Any]]]) -> None:
    bot = _workload(k8s, "Deployment", "serve")
    assert bot["spec"]["replicas"] == 2
    (container,) = _containers(bot)
    assert "--socket" not in container["command"]
    assert 3000 in {p["containerPort"] for p in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert (get["path"], _port(container, get["port"])) == ("/healthz", 3000), probe
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]


def test_workload_selectors_match_their_pods(k8s: list[tuple[str, dict[str, Any]]]) -> None:
    for doc in _kind(k8s, "Deployment"):
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items(), doc["metadata"]["name"]
    bot = _workload(k8s, "Deployment", "serve")
    (service,) = _kind(k8s, "Service")
    assert service["spec"]["selector"].items() <= bot["spec"]["template"]["metadata"]["labels"].items()
    (container,) = _containers(bot)
    assert {_port(container, p["targetPort"]) for p in service["spec"]["ports"]} == {3000}
    for pdb in _kind(k8s, "PodDisruptionBudget"):
        assert (
            pdb["spec"]["selector"]["matchLabels"].items()
            <= bot["spec"]["template"]["metadata"]["labels"].items()
        )


def test_worker_deployment_gets_one_gpu(k8s: list[tuple[str, dict[str, Any]]]) -> None:
    workers = [
        _workload(k8s, "Deployment", "worker"),
        _workload(k8s, "Deployment", "worker", "--queues", "predict"),
    ]
    for worker in workers:
        (container,) = _containers(worker)
        assert int(container["resources"]["limits"]["nvidia.com/gpu"]) == 1
        pod = worker["spec"]["template"]["spec"]
        assert pod.get("nodeSelector") or pod.get("affinity"), "an example placement on GPU nodes"
        assert any(t["key"] == "nvidia.com/gpu" for t in pod.get("tolerations", []))
        assert worker["spec"]["strategy"]["type"] == "Recreate", "a rolling update needs a spare GPU"
    for doc in _kind(k8s, "Deployment") + _kind(k8s, "Job"):
        if all(doc is not worker for worker in workers):
            assert all("nvidia.com/gpu" not in c["resources"].get("limits", {}) for c in _containers(doc))


def test_migration_job(k8s: list[tuple[str, dict[str, Any]]]) -> None:
    job = _workload(k8s, "Job", "db")
    assert _argv(_containers(job)[0]["command"]) == ["ftbot", "db", "upgrade"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in {"Never", "OnFailure"}


def _config_data(k8s: list[tuple[str, dict[str, Any]]]) -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for doc in _kind(k8s, "ConfigMap"):
        found["configMapRef", doc["metadata"]["name"]] = doc["data"]
    for doc in _kind(k8s, "Secret"):
        found["secretRef", doc["metadata"]["name"]] = {**doc.get("data", {}), **doc.get("stringData", {})}
    return found


def _container_env(container: dict[str, Any], k8s: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    sources = _config_data(k8s)
    env: dict[str, Any] = {}
    for ref in container.get("envFrom", []):
        ((kind, target),) = ref.items()
        assert (kind, target["name"]) in sources, f"envFrom {kind} {target['name']} is not in deploy/k8s"
        env.update(sources[kind, target["name"]])
    env.update({e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])})
    return env


def test_manifests_set_only_settings_variables(k8s: list[tuple[str, dict[str, Any]]]) -> None:
    for (kind, name), data in _config_data(k8s).items():
        unknown = set(data) - SETTINGS_VARS - set(NOT_SETTINGS)
        assert not unknown, f"{kind} {name} sets variables ftbot does not read: {unknown}"
        assert all(isinstance(v, str) for v in data.values()), f"{kind} {name}: values must be strings"
    for doc in _kind(k8s, "Deployment") + _kind(k8s, "Job"):
        for container in _containers(doc):
            unknown = set(_container_env(container, k8s)) - SETTINGS_VARS - set(NOT_SETTINGS)
            assert not unknown, f"{doc['metadata']['name']} sets {unknown}"


def test_manifests_give_each_command_its_required_variables(k8s: list[tuple[str, dict[str, Any]]]) -> None:
    checked = set()
    for doc in _kind(k8s, "Deployment") + _kind(k8s, "Job"):
        for container in _containers(doc):
            missing = required_for(container["command"]) - set(_container_env(container, k8s))
            assert not missing, f"{doc['metadata']['name']} lacks {missing}"
            checked.add(_argv(container["command"])[1])
    assert {"serve", "event-worker", "worker", "db"} <= checked


def test_bot_and_worker_share_the_read_write_many_volume(k8s: list[tuple[str, dict[str, Any]]]) -> None:
    (pvc,) = _kind(k8s, "PersistentVolumeClaim")
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    for subcommand in ("serve", "worker"):
        doc = _workload(k8s, "Deployment", subcommand)
        (container,) = _containers(doc)
        data_dir = _container_env(container, k8s)["FTBOT_DATA_DIR"]
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in doc["spec"]["template"]["spec"]["volumes"]
            if "persistentVolumeClaim" in v
        }
        mounted = {
            m["mountPath"]: claims.get(m["name"]) for m in container["volumeMounts"] if "subPath" not in m
        }
        assert mounted.get(data_dir) == pvc["metadata"]["name"], subcommand


def test_pods_run_as_the_image_user(k8s: list[tuple[str, dict[str, Any]]]) -> None:
    uid = int(_user(DEPLOY / "Dockerfile.bot").split(":")[0])
    for doc in _kind(k8s, "Deployment") + _kind(k8s, "Job"):
        security = doc["spec"]["template"]["spec"]["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] == uid, doc["metadata"]["name"]


def test_secret_template_holds_placeholders_only(k8s: list[tuple[str, dict[str, Any]]]) -> None:
    secrets = [doc for file, doc in k8s if file == SECRET_TEMPLATE]
    assert [doc["kind"] for doc in secrets] == ["Secret"]
    data = secrets[0]["stringData"]
    for var in required_for(["ftbot", "serve"]) & {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"}:
        # Values `ftbot serve` refuses, so an unedited Secret fails fast, naming the variable.
        assert data[var].lower() in PLACEHOLDERS, var
    assert not any(REAL_TOKEN.search(v) for v in data.values())


# --- the env example -------------------------------------------------------------------------


def env_example() -> list[tuple[int, bool, str, str]]:
    """(line number, commented out, name, value) for each variable line of the env example."""
    found = []
    for number, line in enumerate(ENV_EXAMPLE.read_text().splitlines()):
        if match := re.fullmatch(r"(#\s*)?([A-Z][A-Z0-9_]*)=(.*)", line.strip()):
            found.append((number, bool(match.group(1)), match.group(2), match.group(3)))
    return found


def test_env_example_lists_every_setting_once() -> None:
    names = [name for _n, _c, name, _v in env_example()]
    assert len(names) == len(set(names)), "listed twice"
    assert not SETTINGS_VARS - set(names), f"missing from {ENV_EXAMPLE.name}: {SETTINGS_VARS - set(names)}"
    assert not set(names) - SETTINGS_VARS - set(NOT_SETTINGS), "not read by anyone"


def test_env_example_comments_every_variable_and_holds_no_values() -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    for number, commented, name, value in env_example():
        above = lines[number - 1].strip()
        assert above.startswith("#") and not re.fullmatch(r"#\s*[A-Z][A-Z0-9_]*=.*", above), name
        if not commented:
            assert value == "", f"{name}: the example holds placeholders only"
        assert not REAL_TOKEN.search(value), name


def test_env_example_leaves_required_variables_to_fill_in(compose: dict[str, Any]) -> None:
    required = set()
    for command in (["ftbot", "serve"], ["ftbot", "serve", "--socket"], ["ftbot", "worker"]):
        required |= required_for(command)
    listed = {name for _n, commented, name, _v in env_example() if not commented}
    assert required | _compose_required(compose) <= listed
