"""Lifecycle actions against a real worker and beat: cancel, pause and resume, retry, restore,
the timeout watchdog, and priorities when workers are scarce."""

import time
from datetime import datetime

import pytest

from tests.conftest import WorkerProcess, wait_until

pytestmark = pytest.mark.e2e

AGENT = {"name": "life-runner", "type": "implementer", "capabilities": ["code_generation"],
         "driver": "shell", "capacity": 8}  # fmt: skip


@pytest.fixture
def agent(client, db):
    return client.post("/api/v1/agents", json=AGENT).json


def submit(client, tasks, **fields):
    body = {"title": "life", "prompt": "p", "dag": {"tasks": tasks}, **fields}
    response = client.post("/api/v1/sessions", json=body)
    assert response.status_code == 201, response.json
    return response.json["id"]


def get(client, session_id):
    return client.get(f"/api/v1/sessions/{session_id}").json


def tasks_of(client, session_id):
    return {task["key"]: task for task in get(client, session_id)["tasks"]}


def wait_status(client, session_id, *statuses, timeout=60):
    return wait_until(lambda: (s := get(client, session_id))["status"] in statuses and s,
                      timeout, interval=0.1, message=f"status in {statuses}")  # fmt: skip


def wait_task(client, session_id, key, status, timeout=30):
    wait_until(lambda: tasks_of(client, session_id)[key]["status"] == status, timeout,
               interval=0.1, message=f"{key} to be {status}")  # fmt: skip


def test_cancel_stops_the_running_command(client, agent, worker, tmp_path):
    marker = tmp_path / "finished"
    session_id = submit(
        client,
        [
            {"key": "long", "command": f"sleep 20; touch {marker}"},
            {"key": "after", "command": "true", "depends_on": ["long"]},
        ],
    )
    wait_task(client, session_id, "long", "in_progress")
    assert client.post(f"/api/v1/sessions/{session_id}/cancel").status_code == 200
    events = wait_until(
        lambda: [e["type"] for e in client.get(f"/api/v1/sessions/{session_id}/events?limit=1000")
                 .json["items"] if e["type"] == "task.outcome_rejected"],
        15, message="the cancelled attempt to report back")  # fmt: skip
    assert events, "the driver was not stopped"
    assert not marker.exists()
    assert {t["status"] for t in tasks_of(client, session_id).values()} == {"cancelled"}
    assert get(client, session_id)["status"] == "cancelled"


def test_pause_lets_running_tasks_finish_and_resume_continues(client, agent, worker):
    session_id = submit(
        client,
        [
            {"key": "a", "command": "sleep 1.5"},
            {"key": "b", "command": "true", "depends_on": ["a"]},
        ],
    )
    wait_task(client, session_id, "a", "in_progress")
    assert client.post(f"/api/v1/sessions/{session_id}/pause").json["status"] == "paused"
    assert tasks_of(client, session_id)["b"]["status"] == "paused"
    wait_task(client, session_id, "a", "completed")
    time.sleep(1.0)  # a window in which b would have started, were the session not paused
    assert tasks_of(client, session_id)["b"]["executions"] == 0
    assert client.post(f"/api/v1/sessions/{session_id}/resume").json["status"] == "queued"
    session = wait_status(client, session_id, "completed")
    assert [t["executions"] for t in session["tasks"]] == [1, 1]


def test_retry_reruns_only_what_did_not_complete(client, agent, worker, tmp_path):
    flag = tmp_path / "fixed"
    session_id = submit(client, [
        {"key": "ok", "command": "true"},
        {"key": "flaky", "command": f"test -f {flag}", "depends_on": ["ok"], "max_attempts": 1},
        {"key": "last", "command": "true", "depends_on": ["flaky"]},
    ])  # fmt: skip
    wait_status(client, session_id, "failed")
    assert tasks_of(client, session_id)["last"]["status"] == "skipped"
    flag.touch()
    assert client.post(f"/api/v1/sessions/{session_id}/retry").json["status"] == "queued"
    session = wait_status(client, session_id, "completed")
    runs = {t["key"]: (t["attempt"], t["executions"]) for t in session["tasks"]}
    # Only flaky and last ran again; attempt numbers keep growing, executions count since retry.
    assert runs == {"ok": (1, 1), "flaky": (2, 1), "last": (1, 1)}


def test_restore_a_checkpoint_reruns_what_came_after_it(client, agent, worker):
    session_id = submit(client, [{"key": "a", "command": "true"},
                                 {"key": "b", "command": "true", "depends_on": ["a"]},
                                 {"key": "c", "command": "exit 1", "depends_on": ["b"],
                                  "max_attempts": 1}])  # fmt: skip
    wait_status(client, session_id, "failed")
    checkpoints = client.get(f"/api/v1/sessions/{session_id}/checkpoints").json
    assert [cp["data"]["key"] for cp in checkpoints] == ["a", "b", "c"]
    first = checkpoints[0]["id"]
    restored = client.post(f"/api/v1/sessions/{session_id}/checkpoints/{first}/restore")
    assert restored.json["status"] == "queued"
    wait_status(client, session_id, "failed")
    runs = {k: (t["attempt"], t["executions"]) for k, t in tasks_of(client, session_id).items()}
    assert runs == {"a": (1, 1), "b": (2, 1), "c": (2, 1)}


def test_watchdog_times_out_a_session_past_its_max_duration(client, agent, worker, beat, db):
    session_id = submit(
        client, [{"key": "forever", "command": "sleep 120"}], max_duration_seconds=60
    )
    wait_task(client, session_id, "forever", "in_progress")
    from models import Session

    row = db.get(Session, session_id)
    row.max_duration_seconds = 1  # the API's minimum is 60 s; shorten it for the test
    db.commit()
    session = wait_status(client, session_id, "timeout", timeout=30)
    assert "max_duration_seconds" in session["error"]
    wait_until(lambda: tasks_of(client, session_id)["forever"]["status"] == "pending", 10)
    assert client.post(f"/api/v1/sessions/{session_id}/retry").status_code == 200
    client.post(f"/api/v1/sessions/{session_id}/cancel")


def test_priority_decides_what_runs_first_when_workers_are_scarce(
    client, agent, worker, worker_env, services_root
):
    worker.stop()
    single = WorkerProcess(worker_env, services_root / "single-worker.log", concurrency=1)
    try:
        low = [submit(client, [{"key": "t", "command": "sleep 0.3"}], priority="low")
               for _ in range(4)]  # fmt: skip
        critical = submit(client, [{"key": "t", "command": "sleep 0.3"}], priority="critical")
        single.start()
        ids = [*low, critical]
        for session_id in ids:
            wait_status(client, session_id, "completed")
        started = {sid: datetime.fromisoformat(get(client, sid)["tasks"][0]["started_at"])
                   for sid in ids}  # fmt: skip
        order = sorted(ids, key=started.get)
        assert order.index(critical) <= 1, "the critical session did not jump the queue"
    finally:
        single.stop()
        worker.start()
