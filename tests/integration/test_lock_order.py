"""Concurrent outcomes and lifecycle actions of one session never deadlock: the lock order."""

import threading

import pytest
from flask import current_app
from sqlalchemy import select, update

from app.drivers.base import DriverResult
from app.engine import attempts, lifecycle, transactions
from app.engine.claim import claim
from app.engine.launch import launch
from app.engine.outcome import record_outcome
from app.engine.transactions import in_transaction
from app.extensions import db as database
from app.services import agents, sessions
from models import Agent, Session, SessionEvent, SessionTask
from models.enums import SessionStatus, TaskStatus

ROUNDS = 30
TOKEN = 1
OK = DriverResult(succeeded=True, summary="done")
FLAKY = DriverResult(succeeded=False, error="flaky", retryable=True)
T = TaskStatus


def register_agent(db, capacity):
    agent = agents.register_agent(db, name="sh", type="implementer", driver="shell",
                                  capabilities=["code_generation"], capacity=capacity)  # fmt: skip
    db.commit()
    return agent.id


def new_session(db, agent_id, tasks):
    """A launched session of tasks (key, depends_on); the agent's failure streak starts at 0, so
    that it never turns unhealthy over the rounds."""
    db.execute(update(Agent).where(Agent.id == agent_id).values(consecutive_failures=0))
    specs = [
        {"key": key, "description": "", "command": "true", "required_capabilities": [],
         "depends_on": deps, "optional": False, "timeout_seconds": 60, "max_attempts": 2,
         "estimate_hours": None}
        for key, deps in tasks
    ]  # fmt: skip
    data = {"title": "t", "prompt": "p", "dag": {"tasks": specs}}
    root = current_app.config["WORKSPACE_ROOT"]
    session, _ = sessions.create_session(db, data, workspace_root=root)
    sessions.start_session(db, session)
    db.commit()
    epoch = launch(db, session.id).epoch
    db.commit()
    ids = {t.key: t.id for t in db.scalars(select(SessionTask).filter_by(session_id=session.id))}
    return session.id, epoch, ids


def start(db, session_id, task_id, epoch):
    """Claim a ready task and start its attempt, as a worker holding an agent slot would."""
    job = claim(db, session_id, task_id, epoch, "w")
    assert job is not None
    assert attempts.start_attempt(db, job, TOKEN)
    db.commit()
    return job


def statuses(db, session_id):
    db.expire_all()
    rows = db.execute(select(SessionTask.key, SessionTask.status).filter_by(session_id=session_id))
    session = db.scalar(select(Session.status).where(Session.id == session_id))
    db.commit()
    return session, dict(rows.all())


def rejected_keys(db, session_id, ids):
    by_id = {task_id: key for key, task_id in ids.items()}
    rows = db.scalars(
        select(SessionEvent.task_id).filter_by(session_id=session_id, type="task.outcome_rejected")
    )
    return {by_id[task_id] for task_id in rows}


def race(app, *steps):
    """Run each step (given a DB session) on its own thread at once; fail on any error."""
    barrier = threading.Barrier(len(steps), timeout=30)
    errors = []

    def run(step):
        try:
            with app.app_context():
                barrier.wait()
                step()
        except Exception as error:  # a deadlock (40P01) surfaces here and fails the test
            errors.append(error)
        finally:
            database.session.remove()

    threads = [threading.Thread(target=run, args=(step,), daemon=True) for step in steps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a step never returned"
    assert errors == []


def plain(step, *args):
    """`step` in one transaction of the thread's session, without `in_transaction`'s retry."""

    def run():
        with database.session.begin():
            step(database.session, *args)

    return run


def retried(step, *args):
    return lambda: in_transaction(step, *args)


@pytest.mark.parametrize("wrap", [plain, retried], ids=["plain", "in_transaction"])
def test_a_success_and_a_retryable_failure_at_once_never_deadlock(app, db, monkeypatch, wrap):
    retried_errors = []  # in_transaction would hide a deadlock by running the step again
    worth_retrying = transactions._worth_retrying

    def noted(error):
        retried_errors.append(error)
        return worth_retrying(error)

    monkeypatch.setattr(transactions, "_worth_retrying", noted)
    agent_id = register_agent(db, capacity=2)
    for _ in range(ROUNDS):
        session_id, epoch, ids = new_session(db, agent_id, [("x", []), ("y", [])])
        x, y = (start(db, session_id, ids[key], epoch) for key in ("x", "y"))
        race(
            app,
            wrap(record_outcome, x, epoch, OK, 0.01, TOKEN),
            wrap(record_outcome, y, epoch, FLAKY, 0.01, TOKEN),
        )
        session, tasks = statuses(db, session_id)
        assert tasks == {"x": T.COMPLETED, "y": T.READY}
        assert session is SessionStatus.DEGRADED  # y is being retried, whichever came first
        assert db.get(SessionTask, ids["y"], populate_existing=True).error == "flaky"
    assert retried_errors == []
    agent = db.get(Agent, agent_id, populate_existing=True)
    assert (agent.tasks_completed, agent.tasks_failed) == (ROUNDS, ROUNDS)


# r fans out to a, b and c; each has a successor of its own, and j joins them.
FAN_OUT = [
    ("r", []), ("a", ["r"]), ("b", ["r"]), ("c", ["r"]),
    ("a2", ["a"]), ("b2", ["b"]), ("c2", ["c"]), ("j", ["a", "b", "c"]),
]  # fmt: skip


def test_pause_or_stop_racing_outcomes_of_a_fan_out_never_deadlock(app, db):
    agent_id = register_agent(db, capacity=4)
    for round_number in range(ROUNDS):
        action = ("pause", "stop")[round_number % 2]
        session_id, epoch, ids = new_session(db, agent_id, FAN_OUT)
        root = start(db, session_id, ids["r"], epoch)
        record_outcome(db, root, epoch, OK, 0.01, TOKEN)
        db.commit()
        a, b, c = (start(db, session_id, ids[key], epoch) for key in ("a", "b", "c"))
        race(
            app,
            plain(record_outcome, a, epoch, OK, 0.01, TOKEN),
            plain(record_outcome, b, epoch, OK, 0.01, TOKEN),
            plain(record_outcome, c, epoch, FLAKY, 0.01, TOKEN),
            plain(lifecycle.apply_action, session_id, action),
        )
        session, tasks = statuses(db, session_id)
        rejected = rejected_keys(db, session_id, ids)
        if action == "pause":  # running attempts finish; nothing new starts
            assert session is SessionStatus.PAUSED
            assert rejected == set()
            assert (tasks["a"], tasks["b"]) == (T.COMPLETED, T.COMPLETED)
            assert tasks["c"] in (T.READY, T.PAUSED)  # retried before or after the pause
            assert {tasks[key] for key in ("a2", "b2", "c2", "j")} == {T.PAUSED}
        else:  # outcomes after the stop are refused; every unfinished task waits in pending
            assert session is SessionStatus.STOPPED
            for key in ("a", "b"):
                assert tasks[key] is (T.PENDING if key in rejected else T.COMPLETED)
            assert tasks["r"] is T.COMPLETED
            assert {tasks[key] for key in tasks if key not in ("r", "a", "b")} == {T.PENDING}
