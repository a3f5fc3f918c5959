"""Prometheus /metrics: the engine's observations, database gauges, HTTP latency by route, and
aggregation of other processes through the multiprocess directory."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import metrics
from tests.conftest import ROOT
from tests.e2e.test_worker_runs_dag import AGENT, run_session


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, frozenset of labels): value} of an exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(text: str, name: str, **labels) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def scrape(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "METRICS_DB_CACHE_SECONDS", 0)

    def get() -> str:
        response = client.get("/metrics")
        assert response.status_code == 200
        assert response.mimetype == "text/plain"
        return response.text

    return get


def test_engine_observations_are_exposed(scrape, db):
    before = scrape()
    metrics.observe_task_started("agent-m", 1.5)
    metrics.observe_task_finished("agent-m", "completed", 2.0, {"input": 10, "output": 5}, 0.25)
    metrics.observe_task_finished("agent-m", "failed", 0.5, 3, None)
    metrics.observe_fencing_rejection("stale_epoch")
    metrics.observe_lease_age("agent-m", 3.0)
    after = scrape()

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("orchestrator_task_queue_wait_seconds_count", agent="agent-m") == 1
    assert moved("orchestrator_task_queue_wait_seconds_sum", agent="agent-m") == 1.5
    assert (
        moved("orchestrator_task_duration_seconds_count", agent="agent-m", status="completed") == 1
    )
    assert moved("orchestrator_task_duration_seconds_count", agent="agent-m", status="failed") == 1
    assert moved("orchestrator_tokens_total", agent="agent-m", kind="input") == 10
    assert moved("orchestrator_tokens_total", agent="agent-m", kind="total") == 3
    assert moved("orchestrator_cost_total", agent="agent-m") == 0.25
    assert moved("orchestrator_fencing_rejections_total", reason="stale_epoch") == 1
    assert moved("orchestrator_lease_age_seconds_count", agent="agent-m") == 1
    assert value(after, "orchestrator_database_up") == 1


@pytest.mark.e2e
def test_metrics_move_after_a_session_runs(client, scrape, db, worker):
    client.post("/api/v1/agents", json=AGENT)
    before = scrape()
    tasks = [{"key": "one", "command": "true"}, {"key": "two", "command": "true",
                                                 "depends_on": ["one"]}]  # fmt: skip
    session = run_session(client, tasks)
    assert session["status"] == "completed"
    after = scrape()

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("orchestrator_sessions", status="completed") == 1
    assert moved("orchestrator_tasks", status="completed") == 2
    assert value(after, "orchestrator_agents", status="active") >= 1
    route = "/api/v1/sessions/<session_id>"
    assert moved("orchestrator_http_request_duration_seconds_count", method="GET", route=route,
                 status="200") >= 1  # fmt: skip
    assert moved("orchestrator_http_request_duration_seconds_count", method="POST",
                 route="/api/v1/sessions", status="201") == 1  # fmt: skip
    assert session["id"] not in after  # routes are templates, never raw paths


def test_unauthenticated_requests_are_timed_under_their_route(scrape, anonymous_client):
    before = scrape()
    assert anonymous_client.get("/api/v1/agents").status_code == 401
    after = scrape()
    labels = {"method": "GET", "route": "/api/v1/agents", "status": "401"}
    name = "orchestrator_http_request_duration_seconds_count"
    assert value(after, name, **labels) - value(before, name, **labels) == 1


def test_other_processes_are_aggregated_through_the_multiprocess_directory(tmp_path, app):
    code = ("from app.metrics import observe_task_finished as f; "
            "f('agent-mp', 'completed', 1.0, 7, 0.5)")  # fmt: skip
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)
    assert len(list(tmp_path.glob("counter_*-*.db"))) == 2  # one file per host and pid

    with app.app_context():
        text = metrics.render_metrics(cache_seconds=0, multiproc_dir=str(tmp_path)).decode()
    assert value(text, "orchestrator_tokens_total", agent="agent-mp", kind="total") == 14
    assert value(text, "orchestrator_cost_total", agent="agent-mp") == 1.0
    labels = {"agent": "agent-mp", "status": "completed"}
    assert value(text, "orchestrator_task_duration_seconds_count", **labels) == 2
