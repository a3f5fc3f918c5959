"""A real Celery worker runs submitted DAGs of shell tasks to the end."""

from datetime import datetime

import pytest

from tests.conftest import wait_until

pytestmark = pytest.mark.e2e

AGENT = {
    "name": "shell-runner",
    "type": "implementer",
    "capabilities": ["code_generation", "test_generation", "deployment"],
    "driver": "shell",
    "capacity": 8,
}


@pytest.fixture
def agent(client, db):
    return client.post("/api/v1/agents", json=AGENT).json


def run_session(client, tasks, timeout=60):
    response = client.post(
        "/api/v1/sessions", json={"title": "e2e", "prompt": "p", "dag": {"tasks": tasks}}
    )
    assert response.status_code == 201, response.json
    session_id = response.json["id"]

    def finished():
        body = client.get(f"/api/v1/sessions/{session_id}").json
        return body if body["status"] in ("completed", "failed", "partially_completed") else None

    return wait_until(finished, timeout, interval=0.1, message="session to finish")


def times(task):
    return datetime.fromisoformat(task["started_at"]), datetime.fromisoformat(task["finished_at"])


def test_parallel_branches_overlap_and_the_join_waits_for_both(client, agent, worker, tmp_path):
    marker = tmp_path / "order.txt"
    tasks = [
        {"key": "setup", "command": f"echo setup >> {marker}"},
        {"key": "left", "command": f"sleep 1; echo left >> {marker}", "depends_on": ["setup"]},
        {"key": "right", "command": f"sleep 1; echo right >> {marker}", "depends_on": ["setup"]},
        {
            "key": "join",
            "command": f"echo join >> {marker}; echo joined",
            "depends_on": ["left", "right"],
            "required_capabilities": ["test_generation"],
        },
    ]
    session = run_session(client, tasks)
    assert session["status"] == "completed", session
    by_key = {task["key"]: task for task in session["tasks"]}
    left, right, join = times(by_key["left"]), times(by_key["right"]), times(by_key["join"])
    assert left[0] < right[1] and right[0] < left[1], "the parallel branches did not overlap"
    assert join[0] >= max(left[1], right[1]), "the join started before both branches finished"
    assert marker.read_text().splitlines()[-1] == "join"
    assert by_key["join"]["result"]["stdout_tail"].strip() == "joined"
    assert all(task["executions"] == 1 for task in session["tasks"])
    assert session["metrics"]["executions"] == 4


def test_a_failing_task_fails_the_session_and_skips_what_depends_on_it(client, agent, worker):
    tasks = [
        {"key": "build", "command": "echo compiling; echo 'error: missing ;' >&2; exit 3"},
        {
            "key": "deploy",
            "command": "true",
            "depends_on": ["build"],
            "required_capabilities": ["deployment"],
        },
        {"key": "docs", "command": "true"},
    ]
    session = run_session(client, tasks)
    by_key = {task["key"]: task for task in session["tasks"]}
    assert session["status"] == "failed"
    assert by_key["build"]["status"] == "failed"
    assert by_key["build"]["result"]["exit_code"] == 3
    assert "missing ;" in by_key["build"]["result"]["stderr_tail"]
    assert by_key["deploy"]["status"] == "skipped"
    assert by_key["docs"]["status"] == "completed"


def test_a_task_over_its_time_limit_is_stopped_and_retried(client, agent, worker):
    tasks = [{"key": "slow", "command": "sleep 30", "timeout_seconds": 1, "max_attempts": 2}]
    session = run_session(client, tasks, timeout=40)
    (task,) = session["tasks"]
    assert session["status"] == "failed"
    assert task["attempt"] == 2
    assert "timed out" in task["error"]
