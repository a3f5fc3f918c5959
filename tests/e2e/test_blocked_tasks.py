"""A real worker: a task blocked for want of an agent completes once one that fits is available,
woken by the agent change (a registration) or, when nothing woke it, by the reconciler."""

import pytest
from sqlalchemy import text

from tests.conftest import wait_until

pytestmark = pytest.mark.e2e

BASE = "/api/v1/agents"
GENERALIST = {"name": "generalist", "type": "debugger", "driver": "shell", "capacity": 4,
              "capabilities": ["code_generation", "debugging"]}  # fmt: skip
CODER = {"name": "coder", "type": "implementer", "driver": "shell", "capacity": 4,
         "capabilities": ["code_generation"]}  # fmt: skip


def tasks_of(client, session_id):
    session = client.get(f"/api/v1/sessions/{session_id}").json
    return {task["key"]: task for task in session["tasks"]}


def blocked_session(client, tmp_path):
    """gate waits for a flag; fix needs `debugging`, which only the generalist has, and the
    generalist goes into maintenance while gate runs: fix is blocked when gate completes."""
    generalist = client.post(BASE, json=GENERALIST).json
    assert client.post(BASE, json=CODER).status_code == 201
    flag = tmp_path / "go"
    dag = {"tasks": [
        {"key": "gate", "command": f"while [ ! -e {flag} ]; do sleep 0.05; done"},
        {"key": "fix", "command": "echo fixed", "depends_on": ["gate"],
         "required_capabilities": ["debugging"]},
    ]}  # fmt: skip
    response = client.post("/api/v1/sessions", json={"title": "blocked", "prompt": "p", "dag": dag})
    assert response.status_code == 201, response.json
    session_id = response.json["id"]
    wait_until(lambda: tasks_of(client, session_id)["gate"]["status"] == "in_progress", 30,
               message="gate to start")  # fmt: skip
    parked = client.post(f"{BASE}/{generalist['id']}/maintenance", json={"on": True})
    assert parked.status_code == 200
    flag.touch()
    wait_until(lambda: tasks_of(client, session_id)["fix"]["status"] == "blocked", 30,
               message="fix to be blocked")  # fmt: skip
    return session_id, generalist


def finished(client, session_id):
    body = client.get(f"/api/v1/sessions/{session_id}").json
    return body if body["status"] in ("completed", "failed", "partially_completed") else None


def test_a_blocked_task_completes_after_an_agent_is_registered(client, db, worker, tmp_path):
    session_id, _ = blocked_session(client, tmp_path)
    debugger = {"name": "debugger", "type": "debugger", "driver": "shell",
                "capabilities": ["debugging"]}  # fmt: skip
    newcomer = client.post(BASE, json=debugger).json
    session = wait_until(lambda: finished(client, session_id), 30, interval=0.1,
                         message="the session to finish")  # fmt: skip
    assert session["status"] == "completed", session
    fix = {task["key"]: task for task in session["tasks"]}["fix"]
    assert fix["assigned_agent_id"] == newcomer["id"] and fix["executions"] == 1


def test_the_reconciler_resumes_a_blocked_task_nobody_woke(client, db, worker, beat, tmp_path):
    session_id, generalist = blocked_session(client, tmp_path)
    # Back by hand in SQL: no API call, so no wake-up; only the reconciler can notice.
    db.execute(text("UPDATE agents SET maintenance = false WHERE id = :id"),
               {"id": generalist["id"]})  # fmt: skip
    db.commit()
    session = wait_until(lambda: finished(client, session_id), 30, interval=0.1,
                         message="the session to finish")  # fmt: skip
    assert session["status"] == "completed", session
    fix = {task["key"]: task for task in session["tasks"]}["fix"]
    assert fix["assigned_agent_id"] == generalist["id"]
