"""Predictions as jobs: the predict worker keeps models warm, batches what arrives together, answers
in the order asked; an OpenAI-compatible server can answer instead; `ftbot predict` asks either."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from redis import Redis
from sqlmodel import col, select

from runner.core.db import session_scope
from runner.core.models import Prediction, PredictionStatus
from runner.data import projects
from runner.jobs import predict, queues
from runner.registry import predictions, versions
from tests.fake_openai import FakeInferenceServer
from tests.pilot_support import PROJECT, make_adapter, make_project
from tests.training_support import ROOT, run_worker_burst, worker_env

TICKETS = [
    "I was charged twice for my subscription this month",
    "the app crashes when I open settings",
    "please change the email address on my account",
    "my parcel has not arrived after two weeks",
    "refund the duplicate invoice please",
    "error 500 when uploading a file",
    "how do I reset my password",
]


@pytest.fixture
def adapters(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("adapters")
    return {n: make_adapter(tiny_model, folder / f"v{n}", seed=n) for n in (1, 2, 3)}


def ask(engine, number: int | None, text: str, *, channel: str = "", ts: str | None = None) -> int:
    with session_scope(engine) as session:
        project = projects.get_project(session, PROJECT)
        version = predictions.resolve_version(session, project, number)
        prediction, _ = predictions.ask(session, project, version, text, channel_id=channel, message_ts=ts)
        assert prediction.id is not None
        return prediction.id


def rows(engine) -> list[Prediction]:
    with session_scope(engine) as session:
        return list(session.exec(select(Prediction).order_by(col(Prediction.id))).all())


def test_warm_models_load_each_base_once_and_keep_a_bounded_cache_of_adapters(tiny_model, adapters):
    from runner.ml.serving import ModelRef, WarmModels

    warm = WarmModels(max_adapters=2)
    conversation = [[{"role": "user", "content": t}] for t in TICKETS[:3]]
    refs = {n: ModelRef(f"{PROJECT}-v{n}", str(tiny_model), str(adapters[n]), False) for n in (1, 2, 3)}
    first = warm.generate(refs[1], conversation, max_new_tokens=4)
    again = warm.generate(refs[1], conversation, max_new_tokens=4)
    assert [g.text for g in first] == [g.text for g in again]  # greedy, the same adapter
    assert all(g.probability is not None and 0 < g.probability <= 1 for g in first)
    warm.generate(refs[2], conversation, max_new_tokens=4)
    assert (warm.counts.bases, warm.counts.adapters, warm.counts.evictions) == (1, 2, 0)
    warm.generate(refs[3], conversation, max_new_tokens=4)  # the cache holds two: v1 goes
    assert warm.loaded_adapters() == [f"{PROJECT}-v2", f"{PROJECT}-v3"]
    assert (warm.counts.bases, warm.counts.adapters, warm.counts.evictions) == (1, 3, 1)
    warm.generate(refs[1], conversation, max_new_tokens=4)  # back again: loaded again, v2 goes
    assert warm.loaded_adapters() == [f"{PROJECT}-v3", f"{PROJECT}-v1"]
    bare = ModelRef("base", str(tiny_model), None, False)
    warm.generate(bare, conversation, max_new_tokens=4)  # the base without any adapter, same weights
    assert warm.counts.bases == 1


def test_one_job_answers_what_arrived_together_grouped_by_version_and_in_order(
    engine, settings, tiny_model, adapters
):
    make_project(engine, settings, base_model=str(tiny_model), adapters=adapters, count=2)
    asked = [ask(engine, 1 if i % 3 else 2, text) for i, text in enumerate(TICKETS)]
    backend = predict.LocalBackend(max_adapters=2)
    drained = predict.answer_queued(settings, engine, backend)
    assert drained.answered == len(TICKETS) and drained.batches == [len(TICKETS)]
    done = rows(engine)
    assert [p.id for p in done] == asked
    assert all(p.status == PredictionStatus.DONE and p.output_text is not None for p in done)
    assert {p.batch_size for p in done if p.version_id == done[0].version_id} == {
        sum(1 for p in done if p.version_id == done[0].version_id)
    }
    # later jobs find nothing left, and the models stay loaded from one job to the next
    assert predict.answer_queued(settings, engine, backend).answered == 0
    ask(engine, 1, "one more ticket about my invoice")
    assert predict.answer_queued(settings, engine, backend).batches == [1]
    assert (backend.warm.counts.bases, backend.warm.counts.adapters) == (1, 2)


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_the_predict_worker_answers_the_queue_and_posts_suggestions_in_order(
    engine, settings, emulator, tiny_model, adapters, database_url
):
    make_project(engine, settings, base_model=str(tiny_model), adapters=adapters, count=1)
    emulator.add_channel("CPILOT", "pilot")
    connection = Redis.from_url(settings.redis_url)
    messages = [emulator.post_user_message("CPILOT", text, "UDAVE") for text in TICKETS[:5]]
    for message in messages:
        prediction_id = ask(engine, 1, message["text"], channel="CPILOT", ts=message["ts"])
        queues.enqueue_prediction(prediction_id, connection=connection)
    settings.ftbot_base_model = str(tiny_model)
    settings.ftbot_models_dir = tiny_model.parent
    run_worker_burst(settings, database_url, emulator, queues="predict")
    done = rows(engine)
    assert all(p.status == PredictionStatus.DONE and p.batch_size == 5 for p in done)
    # one suggestion per message, in its thread, posted in the order the messages were asked about
    suggestions = [p.suggestion_ts for p in done]
    assert all(suggestions) and suggestions == sorted(suggestions, key=float)
    for message, prediction in zip(messages, done, strict=True):
        replies = [m for m in emulator.messages("CPILOT") if m.get("thread_ts") == message["ts"] != m["ts"]]
        assert [m["ts"] for m in replies] == [prediction.suggestion_ts]
        assert replies[0]["text"].startswith(f"Suggestion from {PROJECT} v1: ")


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_ftbot_predict_asks_production_or_a_named_version(
    engine, settings, emulator, tiny_model, adapters, database_url
):
    make_project(engine, settings, base_model=str(tiny_model), adapters=adapters, count=2)
    settings.ftbot_base_model = str(tiny_model)
    settings.ftbot_models_dir = tiny_model.parent
    env = worker_env(settings, database_url, emulator)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot.cli", "predict", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )

    refused = cli(PROJECT, "my card was charged twice", "--inline")
    assert refused.returncode == 1 and "Nothing of *ticket-router* is in production" in refused.stderr
    named = cli(PROJECT, "v2", "my card was charged twice", "--inline", "--json")
    assert named.returncode == 0, named.stderr
    answer = json.loads(named.stdout)
    assert answer["version"] == 2 and answer["status"] == "done" and 0 < answer["confidence"] <= 1
    with session_scope(engine) as session:
        project = projects.get_project(session, PROJECT)
        assert versions.production(session, project) is None


def test_an_openai_compatible_server_answers_instead_on_the_same_path(engine, settings):
    make_project(engine, settings, count=2)

    def answer(model: str, messages: list[dict[str, str]]) -> tuple[str, float] | None:
        if model != f"{PROJECT}-v1":
            return None  # the server does not serve v2
        text = messages[-1]["content"]
        return ("billing" if "charged" in text else "technical"), 0.9

    with FakeInferenceServer(answer) as server:
        settings.ftbot_inference_url = server.url
        first = ask(engine, 1, "I was charged twice")
        second = ask(engine, 1, "the app crashes")
        third = ask(engine, 2, "the app crashes")
        drained = predict.answer_queued(settings, engine)
        assert server.models_asked().count(f"{PROJECT}-v1") == 2
        assert server.requests[0]["messages"][0] == {
            "role": "system",
            "content": "route the support ticket to one queue: billing, technical, account or shipping.",
        }
    assert (drained.answered, drained.failed) == (2, 1)
    found = {p.id: p for p in rows(engine)}
    assert (found[first].label, found[second].label) == ("billing", "technical")
    assert found[first].confidence == pytest.approx(0.9)
    assert found[third].status == PredictionStatus.FAILED
    assert "404" in (found[third].error or "") and "does not exist" in (found[third].error or "")
