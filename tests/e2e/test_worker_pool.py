"""Agent tasks wait on I/O, so the agents queue runs a thread pool sized to the agent slots:
20 agent tasks run at once on a 2-core machine."""

from datetime import datetime

import pytest

from tests.conftest import WorkerProcess, wait_until

pytestmark = pytest.mark.e2e


def test_twenty_agent_tasks_run_at_once(client, db, worker, worker_env, services_root):
    agent = {"name": "wide", "type": "implementer", "capabilities": ["code_generation"],
             "driver": "shell", "capacity": 20}  # fmt: skip
    client.post("/api/v1/agents", json=agent)
    worker.stop()
    wide = WorkerProcess(worker_env, services_root / "wide-worker.log", concurrency=20)
    wide.start()
    try:
        tasks = [{"key": f"t{i}", "command": "sleep 3"} for i in range(20)]
        body = {"title": "wide", "prompt": "p", "dag": {"tasks": tasks}}
        session_id = client.post("/api/v1/sessions", json=body).json["id"]
        session = wait_until(
            lambda: (s := client.get(f"/api/v1/sessions/{session_id}").json)["status"]
            == "completed" and s, 60, interval=0.2)  # fmt: skip
    finally:
        wide.stop()
        worker.start()
    starts = [datetime.fromisoformat(t["started_at"]) for t in session["tasks"]]
    ends = [datetime.fromisoformat(t["finished_at"]) for t in session["tasks"]]
    assert max(starts) < min(ends), "the 20 tasks did not all run at the same time"
