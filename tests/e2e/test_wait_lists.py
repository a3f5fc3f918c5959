"""Scarce agents with a real worker of two threads (and a real beat): a task waiting for its
agent's slot holds no worker thread, the best waiter runs when a slot frees, more capacity wakes
waiters, and the reconciler wakes a waiter whose slot Redis freed without the engine seeing it."""

from datetime import datetime

import pytest
from sqlalchemy import func, select

from app.engine import slots
from models import SessionTask
from models.enums import TaskStatus
from tests.conftest import WorkerProcess, wait_until

pytestmark = pytest.mark.e2e

FINISHED = ("completed", "failed", "partially_completed")


@pytest.fixture(scope="module")
def two_threads(worker, worker_env, services_root):
    """The only worker for this module has two threads (the shared one is stopped meanwhile)."""
    worker.stop()
    small = WorkerProcess(worker_env, services_root / "worker-2-threads.log", concurrency=2)
    small.start()
    yield small
    small.stop()
    worker.start()


def agent(client, name, capability, capacity=1):
    body = {"name": name, "type": "implementer", "driver": "shell", "capacity": capacity,
            "capabilities": [capability]}  # fmt: skip
    response = client.post("/api/v1/agents", json=body)
    assert response.status_code == 201, response.json
    return response.json


def submit(client, command, capability="code_generation", priority="medium"):
    task = {"key": "t", "command": command, "required_capabilities": [capability]}
    body = {"title": "wait", "prompt": "p", "priority": priority, "dag": {"tasks": [task]}}
    response = client.post("/api/v1/sessions", json=body)
    assert response.status_code == 201, response.json
    return response.json["id"]


def gated(path) -> str:
    return f"while [ ! -e {path} ]; do sleep 0.1; done"


def session(client, session_id):
    return client.get(f"/api/v1/sessions/{session_id}").json


def wait_finished(client, session_ids, timeout=90):
    def done():
        bodies = [session(client, sid) for sid in session_ids]
        return bodies if all(b["status"] in FINISHED for b in bodies) else None

    return wait_until(done, timeout, interval=0.2, message="sessions to finish")


def count(db, agent_id, *, parked):
    db.expire_all()
    if parked:
        where = (SessionTask.waiting_agent_id == agent_id, SessionTask.status == TaskStatus.READY)
    else:
        where = (SessionTask.assigned_agent_id == agent_id,
                 SessionTask.status == TaskStatus.IN_PROGRESS)  # fmt: skip
    value = db.scalar(select(func.count()).select_from(SessionTask).where(*where))
    db.commit()
    return value


def started_at(body):
    return datetime.fromisoformat(body["tasks"][0]["started_at"])


def test_waiting_tasks_hold_no_worker_thread(client, db, two_threads, beat, tmp_path):
    narrow = agent(client, "narrow", "code_generation")
    agent(client, "other", "deployment", capacity=2)
    gate = tmp_path / "gate"
    waiting = [submit(client, gated(gate)) for _ in range(6)]
    wait_until(lambda: count(db, narrow["id"], parked=False) == 1, 60, message="one running")
    wait_until(lambda: count(db, narrow["id"], parked=True) == 5, 60, message="five parked")
    # One thread runs the gated task; the five waiters hold none, so the other thread still
    # launches a session (a control task) and runs its task on the other agent.
    (other,) = wait_finished(client, [submit(client, "echo other", capability="deployment")])
    assert other["status"] == "completed"
    gate.touch()
    bodies = wait_finished(client, waiting)
    assert [b["status"] for b in bodies] == ["completed"] * 6
    assert all(b["tasks"][0]["executions"] == 1 for b in bodies)


def test_the_critical_waiter_runs_first_when_the_slot_frees(
    client, db, two_threads, beat, tmp_path
):
    solo = agent(client, "solo", "code_generation")
    gate = tmp_path / "gate"
    blocker = submit(client, gated(gate))
    wait_until(lambda: count(db, solo["id"], parked=False) == 1, 60, message="blocker running")
    deferred = []
    for index in range(3):
        deferred.append(submit(client, "true", priority="deferred"))
        wait_until(lambda n=index + 1: count(db, solo["id"], parked=True) == n, 60,
                   message="deferred parked")  # fmt: skip
    critical = submit(client, "true", priority="critical")
    wait_until(lambda: count(db, solo["id"], parked=True) == 4, 60, message="critical parked")
    gate.touch()
    bodies = wait_finished(client, [blocker, critical, *deferred])
    assert all(b["status"] == "completed" for b in bodies)
    starts = [started_at(b) for b in bodies[1:]]
    assert starts[0] < min(starts[1:]), "the critical task did not run first"
    assert starts[1:] == sorted(starts[1:]), "deferred waiters of one priority ran out of order"


def test_raising_the_capacity_runs_waiters_at_once(client, db, two_threads, beat, tmp_path):
    solo = agent(client, "grows", "code_generation")
    gate = tmp_path / "gate"
    blocker = submit(client, gated(gate))
    wait_until(lambda: count(db, solo["id"], parked=False) == 1, 60, message="blocker running")
    waiting = [submit(client, "true"), submit(client, "true")]
    wait_until(lambda: count(db, solo["id"], parked=True) == 2, 60, message="two parked")
    response = client.patch(f"/api/v1/agents/{solo['id']}", json={"capacity": 3})
    assert response.status_code == 200, response.json
    bodies = wait_finished(client, waiting)
    assert all(b["status"] == "completed" for b in bodies)
    assert session(client, blocker)["status"] == "running"  # the slot holder never let go
    gate.touch()
    assert wait_finished(client, [blocker])[0]["status"] == "completed"


def test_the_reconciler_wakes_a_waiter_whose_slot_freed_unseen(client, db, two_threads, beat):
    solo = agent(client, "forgetful", "code_generation")
    # A slot held outside the engine (as a lease Redis forgets would be): nobody announces its end.
    outsider = slots.agent_semaphore(solo["id"], 1).try_acquire(owner="outside-the-engine")
    assert outsider is not None
    try:
        waiter = submit(client, "true")
        wait_until(lambda: count(db, solo["id"], parked=True) == 1, 60, message="parked")
    finally:
        outsider.release()
    (body,) = wait_finished(client, [waiter], timeout=60)  # the reconciler runs every second
    assert body["status"] == "completed"
