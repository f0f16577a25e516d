"""Settings from the environment, validated once, failing fast with the variable's name.

Every process (bot, worker, CLI) builds one `Settings` and passes it down; nothing reads
`os.environ` elsewhere. Variables a command needs but the environment lacks are reported by
`Settings.require`, which raises `ConfigError` (the CLI turns it into exit code 2).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, computed_field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from runner.core import redaction
from runner.core.exceptions import ConfigError

DEFAULT_SLACK_API_URL = "https://slack.com/api/"
# Values people paste from examples; starting with one of them would only fail later, at Slack.
PLACEHOLDERS = {"", "changeme", "change-me", "xoxb-your-token", "xapp-your-token", "your-signing-secret"}


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ftbot"


def _split_ids(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list | tuple):
        return tuple(str(v).strip() for v in value if str(v).strip())
    return tuple(part.strip() for part in str(value).split(",") if part.strip())


# Comma-separated in the environment ("U1,U2"), not JSON.
IdList = Annotated[tuple[str, ...], NoDecode]


class Settings(BaseSettings):
    """ftbot's configuration; see the README's configuration table for each variable."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    slack_bot_token: str | None = Field(default=None, description="Bot token (xoxb-…)")
    slack_signing_secret: str | None = Field(default=None, description="Signs HTTP requests from Slack")
    slack_app_token: str | None = Field(default=None, description="App-level token (xapp-…) for Socket Mode")
    slack_api_url: str = Field(default=DEFAULT_SLACK_API_URL, description="Slack Web API base URL")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; SQLite under the data dir")
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis for RQ job queues")
    ftbot_data_dir: Path = Field(default_factory=_default_data_dir, description="Artifacts and SQLite")
    ftbot_base_model: str | None = Field(
        default=None,
        description="Default base model: a pulled model name, a Hugging Face id (org/name) or a folder "
        "under FTBOT_MODELS_DIR or FTBOT_DATA_DIR",
    )
    ftbot_models_dir: Path = Field(
        # Derived from the data dir (validated first, as declared first) unless set on its own.
        default_factory=lambda data: Path(data["ftbot_data_dir"]) / "models",
        description="Pulled base models (`ftbot models pull NAME` → FTBOT_MODELS_DIR/NAME)",
    )
    ftbot_trainers: IdList = Field(default=(), description="Slack user ids allowed to train")
    ftbot_oncall: IdList = Field(default=(), description="User ids / group ids allowed to roll back")
    ftbot_admins: IdList = Field(default=(), description="User ids allowed everything")
    ftbot_tally_interval: float = Field(
        default=3.0, description="Seconds between live-tally refreshes of a project (Slack rate limits)"
    )
    ftbot_job_timeout: int = Field(default=6 * 3600, description="Seconds before RQ kills a training job")
    ftbot_progress_interval: float = Field(
        default=10.0, description="Seconds between progress updates in Slack"
    )
    ftbot_heartbeat_timeout: float = Field(
        default=90.0, description="Seconds without a heartbeat before a running job counts as dead"
    )
    ftbot_resume_attempts: int = Field(
        default=2,
        ge=0,
        description="Times a run whose worker died resumes from its last checkpoint before it fails",
    )
    ftbot_queues: IdList = Field(default=("train", "eval"), description="Queues `ftbot worker` serves")
    ftbot_hardware_classes: IdList = Field(
        default=(),
        description="Worker classes, smallest first, as name:gpus:gpu_mem (cpu:0:0,a10:1:24G); each gets "
        "a train-<name> queue; empty: one train queue",
    )
    ftbot_multinode: str = Field(
        default="",
        pattern=r"^(|torchrun|k8s)$",
        description="How a run with nodes>1 is launched: torchrun (c10d rendezvous on FTBOT_NODES) or "
        "k8s (a Kubeflow Trainer TrainJob); empty: such runs are refused",
    )
    ftbot_nodes: IdList = Field(
        default=(),
        description="The fixed nodes of FTBOT_MULTINODE=torchrun, as name=address (a=10.0.0.1,b=10.0.0.2); "
        "the first is the head and hosts the rendezvous; each runs `ftbot worker --node NAME`",
    )
    ftbot_rdzv_port: int = Field(
        default=29400, ge=0, le=65535, description="The head node's port for torchrun's c10d rendezvous"
    )
    ftbot_rdzv_timeout: int = Field(
        default=600, ge=1, description="Seconds a multi-node run waits for every node to join"
    )
    ftbot_k8s_api_url: str = Field(
        default="https://kubernetes.default.svc", description="Kubernetes API server (FTBOT_MULTINODE=k8s)"
    )
    ftbot_k8s_namespace: str = Field(default="ftbot", description="Namespace the TrainJobs are created in")
    ftbot_k8s_token_file: Path = Field(
        default=Path("/var/run/secrets/kubernetes.io/serviceaccount/token"),
        description="The service account token the worker calls the API server with",
    )
    ftbot_k8s_ca_file: str = Field(
        default="/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
        description="The API server's CA bundle (empty: the system's)",
    )
    ftbot_k8s_runtime: str = Field(
        default="torch-distributed", description="The ClusterTrainingRuntime a TrainJob refers to"
    )
    ftbot_k8s_image: str = Field(
        default="registry.example.com/ftbot/worker:0.1.0",
        description="The training pods' image (the worker's)",
    )
    ftbot_k8s_pvc: str = Field(
        default="ftbot-data", description="The ReadWriteMany claim mounted at FTBOT_DATA_DIR in training pods"
    )
    ftbot_k8s_gpu_resource: str = Field(
        default="nvidia.com/gpu", description="Resource each training process takes one of (empty: CPU pods)"
    )
    ftbot_k8s_poll_interval: float = Field(
        default=5.0, gt=0, description="Seconds between reads of a TrainJob's status"
    )
    ftbot_budget_gpu_hours: float | None = Field(
        default=None,
        gt=0,
        description="GPU-hours (worker-hours on CPU) each project may use per calendar month (UTC) "
        "before a run needs an admin's approval; unset: no budget",
    )
    ftbot_deploy_hook: str | None = Field(
        default=None, description="Command or http(s) URL called with the new deployment manifest"
    )
    ftbot_deploy_hook_env: IdList = Field(
        default=(), description="Variables passed on to a deploy hook command (it gets no others)"
    )
    ftbot_deploy_hook_timeout: float = Field(
        default=60.0, gt=0, description="Seconds a deploy hook may take before it counts as failed"
    )
    ftbot_enqueue_timeout: float = Field(
        default=120.0,
        ge=0,
        description="Seconds a queued run may go without its job in Redis before it is failed",
    )
    ftbot_health_token: str | None = Field(
        default=None, description="Bearer token for GET /healthz/details (else local requests only)"
    )
    ftbot_directory_ttl: float = Field(default=60.0, description="Seconds user-group members are cached")
    ftbot_event_replay_after: float = Field(
        default=300.0,
        ge=0,
        description="Seconds before an event whose listener never finished (a crash) is replayed",
    )
    ftbot_event_attempts: int = Field(
        default=3, ge=1, description="Deliveries of one event at most, the first included"
    )
    ftbot_event_worker_ttl: float = Field(
        default=10.0,
        gt=0,
        description="Seconds since an event worker's last heartbeat during which events are handed to it",
    )
    ftbot_event_worker_threads: int = Field(
        default=2,
        ge=1,
        description="Listener threads per event worker (more contend for the interpreter lock and database)",
    )
    ftbot_slack_retry_budget: float = Field(
        default=15.0,
        ge=0,
        description="Seconds one Slack call may spend waiting out rate limits before it gives up",
    )
    ftbot_work_threads: int = Field(
        default=8, ge=1, description="Threads per bot process doing listeners' work after the ack"
    )
    ftbot_work_queue: int = Field(
        default=200,
        ge=1,
        description="Listener work waiting or running per bot process before new requests are told to retry",
    )
    ftbot_repair_interval: float = Field(
        default=60.0,
        gt=0,
        description="Seconds between passes that bring tallies and :warning: marks in line with the data",
    )
    ftbot_inference_url: str | None = Field(
        default=None,
        description="OpenAI-compatible server (vLLM, LoRAX) serving the adapters: predictions go there",
    )
    ftbot_predict_batch: int = Field(
        default=16, ge=1, le=512, description="Most predictions a predict worker answers in one batch"
    )
    ftbot_predict_cache: int = Field(
        default=4, ge=1, le=64, description="Adapters a predict worker keeps loaded beside its base models"
    )
    ftbot_shadow_min_reviews: int = Field(
        default=30, ge=1, description="Labeled pilot messages before a shadow candidate's report is posted"
    )
    ftbot_label_shift_min: int = Field(
        default=50, ge=1, description="Pilot suggestions before their label mix is compared with training's"
    )
    ftbot_drift_min_reviews: int = Field(
        default=10, ge=1, description="Reviewed suggestions of a version before its acceptance is tested"
    )
    slack_client_id: str | None = Field(default=None, description="Must stay unset (see below)")
    slack_client_secret: str | None = Field(default=None, description="Must stay unset (see below)")

    @field_validator(
        "ftbot_trainers",
        "ftbot_oncall",
        "ftbot_admins",
        "ftbot_queues",
        "ftbot_hardware_classes",
        "ftbot_nodes",
        "ftbot_deploy_hook_env",
        mode="before",
    )
    @classmethod
    def _ids(cls, value: object) -> tuple[str, ...]:
        return _split_ids(value)

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    def model_post_init(self, context: Any, /) -> None:
        redaction.remember(self.secret_values())

    def secret_values(self) -> list[str]:
        """Every configured value that must never be shown: tokens, secrets, passwords in URLs, and
        what the deploy hook is given from the environment."""
        values = [
            self.slack_bot_token,
            self.slack_signing_secret,
            self.slack_app_token,
            self.slack_client_secret,
            self.ftbot_health_token,
            *self.deploy_hook_environment().values(),
        ]
        for url in (self.database_url, self.redis_url, self.ftbot_deploy_hook, self.ftbot_inference_url):
            try:
                values.append(urlsplit(url or "").password)
            except ValueError:  # not a URL (a hook command); nothing to take from it
                continue
        return [v for v in values if v]

    @staticmethod
    def inherited_environment(names: tuple[str, ...]) -> dict[str, str]:
        """The variables `names` of this process's environment that are set (for child processes
        that get a chosen few, such as the deploy hook)."""
        return {name: os.environ[name] for name in names if name in os.environ}

    def deploy_hook_environment(self) -> dict[str, str]:
        """The variables named in ``FTBOT_DEPLOY_HOOK_ENV`` that are set, with their values."""
        return {name: os.environ[name] for name in self.ftbot_deploy_hook_env if name in os.environ}

    @computed_field  # type: ignore[prop-decorator]
    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the driver ftbot uses (psycopg 3 for PostgreSQL)."""
        url = self.database_url or f"sqlite:///{self.ftbot_data_dir / 'ftbot.db'}"
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    @property
    def model_roots(self) -> dict[str, Path]:
        """The folders a local base model may come from, by the variable that sets each."""
        return {"FTBOT_MODELS_DIR": self.ftbot_models_dir, "FTBOT_DATA_DIR": self.ftbot_data_dir}

    def require(self, *names: str, purpose: str) -> None:
        """Fail with every missing or placeholder variable among `names`, named as in the environment.

        Args:
            names: field names, e.g. ``"slack_bot_token"``.
            purpose: what needs them, for the message (e.g. ``"ftbot serve"``).

        Raises:
            ConfigError: naming each variable that is unset or still a placeholder.
        """
        missing = [n.upper() for n in names if (getattr(self, n) or "").strip().lower() in PLACEHOLDERS]
        if missing:
            raise ConfigError(f"{purpose} needs {', '.join(missing)}: set it in the environment (see README)")

    def refuse_oauth_variables(self) -> None:
        """Bolt silently switches to OAuth mode when both OAuth variables are set; ftbot is single-workspace.

        Raises:
            ConfigError: when SLACK_CLIENT_ID and SLACK_CLIENT_SECRET are both set.
        """
        if self.slack_client_id and self.slack_client_secret:
            raise ConfigError(
                "SLACK_CLIENT_ID and SLACK_CLIENT_SECRET are set: they would switch Bolt to OAuth mode, "
                "but ftbot runs with one bot token (SLACK_BOT_TOKEN). Unset both."
            )


def load_settings(**overrides: object) -> Settings:
    """Build `Settings` from the environment (plus overrides), turning validation errors into ConfigError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid configuration: {problems}") from exc
