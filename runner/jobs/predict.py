"""The predict queue's job: answer every queued prediction, in batches, with warm models.

A predict worker (`runner.jobs.worker`, ``ftbot worker --queues predict``) runs jobs in its own
process (no fork per job), so what is loaded here stays loaded: the base models and a bounded cache
of adapters (`runner.ml.serving.WarmModels`), or, with ``FTBOT_INFERENCE_URL``, a client of an
OpenAI-compatible server that serves the adapters. Each job claims the oldest queued predictions
together — those asked while the previous batch ran arrive together — answers them grouped by
version, stores the answers, and posts the pilot suggestions in the order they were asked. A job
whose prediction was already answered by an earlier batch finds nothing left and returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.engine import Engine

from runner.core.config import Settings
from runner.core.db import session_scope
from runner.core.models import TaskType
from runner.data import textnorm
from runner.jobs.tasks import JobContext
from runner.registry import predictions
from runner.registry.predictions import Answer, Request
from runner.slack import notify

log = logging.getLogger(__name__)


class Backend(Protocol):
    """What answers a batch of requests that share one version."""

    def answer(self, requests: Sequence[Request], *, batch_size: int) -> list[Answer]: ...


def _label(request: Request, text: str) -> str | None:
    if request.task_type != TaskType.CLASSIFICATION:
        return None
    return textnorm.label_named(text, request.labels)


@dataclass
class LocalBackend:
    """Generation in this process with warm models (torch is imported on first use)."""

    max_adapters: int = 4
    warm: Any = field(default=None, init=False)

    def answer(self, requests: Sequence[Request], *, batch_size: int) -> list[Answer]:
        from runner.ml.serving import ModelRef, WarmModels

        if self.warm is None:
            self.warm = WarmModels(max_adapters=self.max_adapters)
        first = requests[0]
        ref = ModelRef(first.served_name, first.base_model, first.adapter_dir, first.quantize)
        outputs = self.warm.generate(
            ref,
            [r.messages for r in requests],
            max_new_tokens=predictions.max_new_tokens(first.task_type),
            batch_size=batch_size,
        )
        return [
            Answer(o.text, _label(r, o.text), o.probability, o.latency_s, len(requests))
            for r, o in zip(requests, outputs, strict=True)
        ]


@dataclass
class RemoteBackend:
    """An OpenAI-compatible server (``FTBOT_INFERENCE_URL``) that serves ``<project>-v<N>``."""

    url: str

    def answer(self, requests: Sequence[Request], *, batch_size: int) -> list[Answer]:
        from runner.ml.openai_api import complete

        first = requests[0]
        began = time.perf_counter()
        outputs = complete(
            self.url,
            first.served_name,
            [r.messages for r in requests],
            max_new_tokens=predictions.max_new_tokens(first.task_type),
            parallel=batch_size,
        )
        seconds = time.perf_counter() - began
        return [
            Answer(o.text, _label(r, o.text), o.probability, seconds, len(requests))
            for r, o in zip(requests, outputs, strict=True)
        ]


_backends: dict[tuple[str | None, int], Backend] = {}


def backend_for(settings: Settings) -> Backend:
    """This process's backend (kept: its models stay loaded from one job to the next)."""
    key = (settings.ftbot_inference_url, settings.ftbot_predict_cache)
    if key not in _backends:
        url = settings.ftbot_inference_url
        _backends[key] = RemoteBackend(url) if url else LocalBackend(settings.ftbot_predict_cache)
    return _backends[key]


@dataclass
class Drained:
    """What one job did: how many predictions it answered, in which batches."""

    answered: int = 0
    failed: int = 0
    batches: list[int] = field(default_factory=list)


def answer_queued(settings: Settings, engine: Engine, backend: Backend | None = None) -> Drained:
    """Answer queued predictions, a batch at a time, until none is left (see the module docstring)."""
    backend = backend or backend_for(settings)
    done = Drained()
    while True:
        with session_scope(engine) as session:
            claimed = predictions.claim(session, settings.ftbot_predict_batch)
            asked = predictions.requests(session, claimed)
        if not asked:
            return done
        done.batches.append(len(asked))
        for group in _by_version(asked):
            try:
                answers = backend.answer(group, batch_size=settings.ftbot_predict_batch)
            except Exception as exc:  # a model that will not load, a server that refuses: say so
                log.exception("prediction batch failed", extra={"model": group[0].served_name})
                with session_scope(engine) as session:
                    for request in group:
                        predictions.fail(session, request.prediction_id, f"{type(exc).__name__}: {exc}")
                done.failed += len(group)
                continue
            with session_scope(engine) as session:
                for request, answer in zip(group, answers, strict=True):
                    predictions.record(session, request.prediction_id, answer)
            done.answered += len(group)
        notify.post_suggestions(settings, engine, [r.prediction_id for r in asked])
        notify.post_comparison_items(settings, engine)
        for project_id in {r.project_id for r in asked}:
            notify.label_mix_check(settings, engine, project_id)


def _by_version(asked: Sequence[Request]) -> list[list[Request]]:
    """The requests grouped by the model that answers them, groups in order of their first request."""
    groups: dict[str, list[Request]] = {}
    for request in asked:
        groups.setdefault(request.served_name, []).append(request)
    return list(groups.values())


def predict_job(prediction_id: int) -> dict[str, Any]:
    """RQ job on the predict queue (enqueued per prediction; the first to run answers the batch)."""
    ctx = JobContext.current()
    drained = answer_queued(ctx.settings, ctx.engine)
    return {"prediction_id": prediction_id, "answered": drained.answered, "batches": drained.batches}
