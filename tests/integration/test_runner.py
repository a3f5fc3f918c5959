"""The attempt runner's paths on real PostgreSQL and Redis, with a shell agent running commands."""

import threading

import pytest
from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from app.engine import attempts, lifecycle, outcome, runner, slots, waitlist
from app.engine.launch import launch
from app.engine.transactions import in_transaction
from app.extensions import db as database
from app.services import agents, sessions
from models import Agent, Checkpoint, Session, SessionEvent, SessionTask
from models.enums import SessionStatus, TaskStatus
from tests.conftest import wait_until

WORKER = "runner-test"


def make_session(db, tasks, capacity=1):
    """A running session of shell tasks (key, command, depends_on) on one shell agent."""
    agent = agents.register_agent(db, name="sh", type="implementer", driver="shell",
                                  capabilities=["code_generation"], capacity=capacity)  # fmt: skip
    specs = [
        {"key": key, "description": "", "command": command, "required_capabilities": [],
         "depends_on": deps, "optional": False, "timeout_seconds": 60, "max_attempts": 2,
         "estimate_hours": None}
        for key, command, deps in tasks
    ]  # fmt: skip
    data = {"title": "t", "prompt": "p", "dag": {"tasks": specs}}
    root = current_app.config["WORKSPACE_ROOT"]
    session, _ = sessions.create_session(db, data, workspace_root=root)
    sessions.start_session(db, session)
    db.commit()
    epoch = launch(db, session.id).epoch
    db.commit()
    return session.id, agent.id, epoch


def task(db, session_id, key) -> SessionTask:
    db.expire_all()
    row = db.scalar(select(SessionTask).filter_by(session_id=session_id, key=key))
    db.commit()  # no transaction of the test's stays open while the runner works
    return row


def session_status(db, session_id) -> SessionStatus:
    db.expire_all()
    status = db.scalar(select(Session.status).where(Session.id == session_id))
    db.commit()
    return status


def event_types(db, session_id, task_id) -> list[str]:
    rows = db.scalars(
        select(SessionEvent.type).filter_by(session_id=session_id, task_id=task_id)
        .order_by(SessionEvent.id)
    )  # fmt: skip
    return list(rows)


def semaphore(agent_id, capacity=1):
    return slots.agent_semaphore(agent_id, capacity)


class InThread:
    """`run_task` on a thread of its own, in its own app context, as a worker thread runs it."""

    def __init__(self, app, *args):
        self.result, self.error = None, None
        self._thread = threading.Thread(target=self._run, args=(app, args), daemon=True)
        self._thread.start()

    def _run(self, app, args):
        try:
            with app.app_context():
                self.result = runner.run_task(*args)
        except Exception as error:  # any error must fail the test, not vanish with the thread
            self.error = error
        finally:
            database.session.remove()

    def join(self, timeout=60.0):
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "run_task did not return"
        if self.error is not None:
            raise self.error
        return self.result


def test_a_free_slot_starts_the_attempt_in_the_claim_and_the_task_completes(
    db, redis_client, monkeypatch
):
    sid, agent_id, epoch = make_session(
        db, [("a", "echo built", []), ("b", "true", ["a"]), ("c", "true", ["a"])]
    )
    second_start = []
    monkeypatch.setattr(attempts, "start_attempt", lambda *args: second_start.append(args))
    a = task(db, sid, "a")
    dispatch = runner.run_task(sid, a.id, epoch, WORKER)
    assert second_start == []  # no transaction of its own started the attempt
    done = task(db, sid, "a")
    assert done.status is TaskStatus.COMPLETED and done.executions == 1
    assert done.result["summary"] == "built"
    assert event_types(db, sid, a.id) == ["task.assigned", "task.started", "task.completed"]
    assert sorted(dispatch.runs) == sorted([[task(db, sid, "b").id], [task(db, sid, "c").id]])
    assert dispatch.retry_in is None
    assert semaphore(agent_id).state().holders == []


def test_a_busy_agent_parks_the_task_and_frees_the_worker_until_a_slot_is_woken(
    app, db, redis_client
):
    sid, agent_id, epoch = make_session(db, [("a", "true", [])])
    a = task(db, sid, "a")
    sent = []
    with semaphore(agent_id).acquire(timeout=5, owner="someone-else"):
        assert runner.run_task(sid, a.id, epoch, WORKER, sent.append) is None  # returns at once
        parked = task(db, sid, "a")
        assert parked.status is TaskStatus.READY and parked.waiting_agent_id == agent_id
        assert (parked.attempt, parked.executions) == (0, 0)  # no attempt was used
        assert semaphore(agent_id).state().waiters == []  # nobody waits in Redis
        assert sent == []  # no slot was free: nobody woken
    (woken,) = in_transaction(waitlist.wake, agent_id)  # the slot is free again
    assert woken.runs == [[a.id]] and woken.epoch == epoch
    runner.run_task(sid, a.id, epoch, WORKER, sent.append)
    done = task(db, sid, "a")
    assert (done.status, done.attempt, done.executions) == (TaskStatus.COMPLETED, 1, 1)
    assert done.waiting_agent_id is None and done.waiting_since is None
    assert event_types(db, sid, a.id) == [
        "task.waiting_for_agent", "task.assigned", "task.started", "task.completed"
    ]  # fmt: skip
    assert semaphore(agent_id).state().holders == []


def test_a_lost_slot_lease_stops_the_command_and_retries_the_task(
    app, db, redis_client, tmp_path, monkeypatch
):
    monkeypatch.setitem(app.config, "TASK_LEASE_SECONDS", 1.5)  # slot lease renewed every 0.5 s
    started, finished = tmp_path / "started", tmp_path / "finished"
    sid, agent_id, epoch = make_session(
        db, [("a", f"touch {started}; sleep 30; touch {finished}", [])]
    )
    a = task(db, sid, "a")
    run = InThread(app, sid, a.id, epoch, WORKER)
    wait_until(started.exists, 20, message="the command started")
    assert semaphore(agent_id).revoke(f"{WORKER}/{a.id}") == 1
    dispatch = run.join()
    assert not finished.exists()  # the command was killed, not waited for
    retried = task(db, sid, "a")
    assert retried.status is TaskStatus.READY and retried.executions == 1
    assert "lease was lost" in retried.error
    assert session_status(db, sid) is SessionStatus.DEGRADED
    assert dispatch.retry_in is not None
    assert "task.retry_scheduled" in event_types(db, sid, a.id)
    assert semaphore(agent_id).state().holders == []


@pytest.mark.parametrize(
    "action, task_ends, session_ends",
    [("cancel", TaskStatus.CANCELLED, SessionStatus.CANCELLED),
     ("stop", TaskStatus.PENDING, SessionStatus.STOPPED)],
)  # fmt: skip
def test_a_task_taken_away_in_postgres_kills_its_command_and_its_outcome_is_refused(
    app, db, redis_client, tmp_path, monkeypatch, action, task_ends, session_ends
):
    monkeypatch.setitem(app.config, "TASK_HEARTBEAT_SECONDS", 0.2)
    started, finished = tmp_path / "started", tmp_path / "finished"
    sid, agent_id, epoch = make_session(
        db, [("a", f"touch {started}; sleep 30; touch {finished}", [])]
    )
    a = task(db, sid, "a")
    run = InThread(app, sid, a.id, epoch, WORKER)
    wait_until(started.exists, 20, message="the command started")
    lifecycle.apply_action(db, sid, action)
    db.commit()
    assert run.join() is None
    assert not finished.exists()  # killed before its end
    assert task(db, sid, "a").status is task_ends
    assert session_status(db, sid) is session_ends
    assert event_types(db, sid, a.id)[-1] == "task.outcome_rejected"
    assert db.scalar(select(func.count()).select_from(Checkpoint).filter_by(task_id=a.id)) == 0
    assert semaphore(agent_id).state().holders == []


def test_a_connection_lost_while_recording_the_outcome_is_retried_and_counted_once(
    db, redis_client, monkeypatch
):
    real_checkpoint, failures = outcome._checkpoint, []

    def checkpoint_once_broken(*args):
        if not failures:
            failures.append(args)
            raise OperationalError("INSERT INTO checkpoints ...", {}, Exception("server closed"),
                                   connection_invalidated=True)  # fmt: skip
        return real_checkpoint(*args)

    monkeypatch.setattr(outcome, "_checkpoint", checkpoint_once_broken)
    sid, agent_id, epoch = make_session(db, [("a", "true", [])])
    a = task(db, sid, "a")
    runner.run_task(sid, a.id, epoch, WORKER)
    assert len(failures) == 1
    done = task(db, sid, "a")
    assert done.status is TaskStatus.COMPLETED and done.executions == 1
    assert db.scalar(select(func.count()).select_from(Checkpoint).filter_by(task_id=a.id)) == 1
    assert event_types(db, sid, a.id).count("task.completed") == 1
    assert db.get(Agent, agent_id).tasks_completed == 1
    assert session_status(db, sid) is SessionStatus.COMPLETED
    assert semaphore(agent_id).state().holders == []
