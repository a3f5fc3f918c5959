"""Agents whose endpoint is `local` are host-free profiles: the OpenCode server beside the
worker that runs the task (its WORKER_OPENCODE_URL) serves them."""

from __future__ import annotations

import threading

import pytest

import app.drivers.endpoints as endpoints
from app.drivers.base import AgentSpec, DriverJob
from app.drivers.opencode import OpenCodeDriver


def _job() -> DriverJob:
    agent = AgentSpec(id="a1", name="oc", driver="opencode", endpoint="local")
    return DriverJob(session_id="s1", task_id="t1", task_key="t", attempt=1, title="t",
                     description="", agent=agent, workdir="/tmp", timeout_seconds=5)  # fmt: skip


def test_local_is_allowed_by_any_policy_and_resolves_to_the_workers_server(monkeypatch):
    assert endpoints.policy_for("oc.example.com").problem("local") is None
    monkeypatch.setenv("WORKER_OPENCODE_URL", "http://127.0.0.1:4096")
    assert endpoints.resolve("local") == "http://127.0.0.1:4096"
    assert endpoints.resolve("http://10.0.0.5:4096") == "http://10.0.0.5:4096"
    monkeypatch.delenv("WORKER_OPENCODE_URL")
    assert endpoints.resolve("local") is None


def test_a_worker_without_a_local_server_fails_the_task_retryably(monkeypatch):
    monkeypatch.delenv("WORKER_OPENCODE_URL", raising=False)
    result = OpenCodeDriver().run(_job(), threading.Event())
    assert not result.succeeded and result.retryable
    assert "WORKER_OPENCODE_URL" in result.error and "local" in result.error


@pytest.mark.parametrize("url", ["http://10.9.9.9:4096", "http://user:pw@127.0.0.1:4096"])
def test_the_workers_server_still_passes_the_endpoint_policy(monkeypatch, url):
    monkeypatch.setenv("WORKER_OPENCODE_URL", url)
    result = OpenCodeDriver().run(_job(), threading.Event())
    assert not result.succeeded and "refused" in result.error
    assert "pw" not in result.error  # never credentials in what is stored or logged
