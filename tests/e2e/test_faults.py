"""Crash safety with a real worker and beat: SIGKILL of a worker mid-task, a worker restart,
Redis restarted empty and PostgreSQL restarted during a run. Each session still completes, no
completed task runs again and no result is written twice."""

import contextlib
import threading

import pytest
from sqlalchemy import func, select

from models import Checkpoint, SessionEvent
from tests.conftest import wait_until

pytestmark = pytest.mark.e2e

AGENT = {"name": "fault-runner", "type": "implementer", "capabilities": ["code_generation"],
         "driver": "shell", "capacity": 8}  # fmt: skip


@pytest.fixture
def agent(client, db):
    return client.post("/api/v1/agents", json=AGENT).json


@contextlib.contextmanager
def supervised(worker):
    """Restart the worker whenever it exits, as systemd, compose or a PaaS would.

    A Celery worker that loses its Redis broker while holding unacknowledged messages exits
    with "Unrecoverable error" (kombu restores them through the dead connection)."""
    stop = threading.Event()

    def watch():
        while not stop.wait(0.5):
            if worker.process.poll() is not None:
                worker.start()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def counting_chain(tmp_path, slow_key: str, slow_seconds: float):
    """a -> b -> c; each appends its key to a log when it starts and when it ends."""
    log = tmp_path / "runs.log"
    tasks = []
    for key, deps in (("a", []), ("b", ["a"]), ("c", ["b"])):
        pause = slow_seconds if key == slow_key else 0.2
        command = f"echo start-{key} >> {log}; sleep {pause}; echo end-{key} >> {log}"
        tasks.append({"key": key, "command": command, "depends_on": deps, "max_attempts": 3})
    return tasks, log


def submit(client, tasks):
    body = {"title": "fault", "prompt": "p", "dag": {"tasks": tasks}}
    response = client.post("/api/v1/sessions", json=body)
    assert response.status_code == 201, response.json
    return response.json["id"]


def session_of(client, session_id):
    return client.get(f"/api/v1/sessions/{session_id}").json


def task_status(client, session_id, key):
    return {t["key"]: t for t in session_of(client, session_id)["tasks"]}[key]["status"]


def wait_finished(client, session_id, timeout=60):
    return wait_until(
        lambda: (s := session_of(client, session_id))["status"] in ("completed", "failed") and s,
        timeout, interval=0.2, message="the session to finish",
    )  # fmt: skip


def assert_each_completed_once(db, session, log, rerun=(), may_rerun=()):
    assert session["status"] == "completed", [
        (t["key"], t["status"], t["error"], t["executions"]) for t in session["tasks"]
    ]
    for task in session["tasks"]:
        expected = {2} if task["key"] in rerun else {1, 2} if task["key"] in may_rerun else {1}
        assert task["executions"] in expected, task
    lines = log.read_text().split()
    for key in ("a", "b", "c"):
        assert lines.count(f"end-{key}") == 1, lines
    completed_checkpoints = db.scalar(
        select(func.count()).select_from(Checkpoint).where(Checkpoint.session_id == session["id"])
    )
    assert completed_checkpoints == 3, "a result was written more than once"


def event_types(db, session_id):
    return list(db.scalars(select(SessionEvent.type).where(SessionEvent.session_id == session_id)))


def test_worker_killed_mid_task_is_recovered_by_lease(client, agent, worker, beat, db, tmp_path):
    tasks, log = counting_chain(tmp_path, "b", 4)
    session_id = submit(client, tasks)
    # "in_progress" is set at the claim, before the command runs: wait for the command itself.
    wait_until(lambda: log.exists() and "start-b" in log.read_text().split(), 30,
               message="b's command to start")  # fmt: skip
    worker.kill()
    worker.start()
    session = wait_finished(client, session_id)
    assert_each_completed_once(db, session, log, rerun=("b",))
    assert log.read_text().split().count("start-b") == 2
    types = event_types(db, session_id)
    assert "session.orphaned" in types and "session.relaunching" in types


def test_worker_restart_mid_task_finishes_the_task(client, agent, worker, beat, db, tmp_path):
    tasks, log = counting_chain(tmp_path, "b", 2)
    session_id = submit(client, tasks)
    wait_until(lambda: task_status(client, session_id, "b") == "in_progress", 30,
               message="b to start")  # fmt: skip
    worker.stop()  # warm shutdown: the running task finishes first
    worker.start()
    assert_each_completed_once(db, wait_finished(client, session_id), log)


def test_redis_restarted_empty_mid_run(client, agent, worker, beat, db, tmp_path,
                                        embedded_redis):  # fmt: skip
    if embedded_redis is None:
        pytest.skip("Redis comes from REDIS_URL; this test restarts an embedded one")
    tasks, log = counting_chain(tmp_path, "b", 2)
    session_id = submit(client, tasks)
    wait_until(lambda: task_status(client, session_id, "b") == "in_progress", 30,
               message="b to start")  # fmt: skip
    with supervised(worker):
        embedded_redis.kill()
        embedded_redis.start()
        session = wait_finished(client, session_id, timeout=90)
    # The agent slot's lease lived in Redis: losing it stops b, which runs again.
    assert_each_completed_once(db, session, log, may_rerun=("b",))
    assert worker.process.poll() is None


def test_postgres_restarted_mid_run(client, agent, worker, beat, db, tmp_path, embedded_postgres):
    if embedded_postgres is None:
        pytest.skip("PostgreSQL comes from DATABASE_URL; this test restarts an embedded one")
    tasks, log = counting_chain(tmp_path, "b", 3)
    session_id = submit(client, tasks)
    wait_until(lambda: task_status(client, session_id, "b") == "in_progress", 30,
               message="b to start")  # fmt: skip
    embedded_postgres.stop("fast")
    embedded_postgres.start()
    db.rollback()
    session = wait_finished(client, session_id, timeout=90)
    assert_each_completed_once(db, session, log)
