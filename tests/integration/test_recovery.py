"""The watchdog's and the reconciler's rules, on a real PostgreSQL, situations built by hand."""

from datetime import timedelta

from app.drivers.base import DriverResult
from app.engine import attempts, lifecycle, recovery
from app.engine.claim import claim
from app.engine.launch import launch
from app.engine.outcome import record_outcome
from models import Session, SessionTask
from models.base import utcnow
from models.enums import SessionStatus, TaskStatus
from tests.integration.test_execution import make_session, task_ids

NOTHING_IN_BROKER = lambda _id: False  # noqa: E731
EVERYTHING_IN_BROKER = lambda _id: True  # noqa: E731


def started(db, tasks=(("a", [], [], False), ("b", ["a"], [], False))):
    session = make_session(db, list(tasks))
    dispatch = launch(db, session.id)
    db.commit()
    return session, dispatch


def age(db, model, row_id, **columns_seconds_ago):
    row = db.get(model, row_id)
    for column, seconds in columns_seconds_ago.items():
        setattr(row, column, utcnow() - timedelta(seconds=seconds))
    db.commit()


def test_watchdog_finds_sessions_past_their_deadline_and_times_them_out(db):
    session, _ = started(db)
    assert recovery.sessions_past_deadline(db) == []
    age(db, Session, session.id, started_at=4000)
    assert recovery.sessions_past_deadline(db) == [session.id]
    assert lifecycle.time_out(db, session.id) is True
    db.commit()
    db.refresh(session)
    assert session.status is SessionStatus.TIMEOUT
    assert lifecycle.time_out(db, session.id) is False  # idempotent


def test_a_task_whose_lease_expired_is_lost_work(db):
    session, dispatch = started(db)
    ids = task_ids(db, session)
    job = claim(db, session.id, ids["a"], dispatch.epoch)
    attempts.start_attempt(db, job, 1)
    db.commit()
    assert recovery.find_lost_work(db, 30, 30, EVERYTHING_IN_BROKER) == {}
    age(db, SessionTask, job.task_id, heartbeat_at=60)
    lost = recovery.find_lost_work(db, 30, 30, EVERYTHING_IN_BROKER)
    assert "lease" in lost[session.id]
    assert recovery.requeue_lost(db, session.id, lost[session.id]) is True
    db.commit()
    db.refresh(session)
    assert session.status is SessionStatus.QUEUED
    relaunched = launch(db, session.id)
    db.commit()
    assert relaunched.runs == [[ids["a"], ids["b"]]]
    late = record_outcome(db, job, dispatch.epoch, DriverResult(True), 1, 1)
    assert late is None


def test_a_ready_task_missing_from_the_broker_is_lost_work(db):
    session, _ = started(db)
    ids = task_ids(db, session)
    age(db, SessionTask, ids["a"], queued_at=60)
    assert recovery.find_lost_work(db, 30, 30, EVERYTHING_IN_BROKER) == {}
    assert "broker" in recovery.find_lost_work(db, 30, 30, NOTHING_IN_BROKER)[session.id]


def test_a_queued_session_whose_launch_vanished_is_lost_work(db):
    session = make_session(db, [("a", [], [], False)])
    age(db, Session, session.id, updated_at=60)
    assert recovery.find_lost_work(db, 30, 30, EVERYTHING_IN_BROKER) == {}
    assert "launch" in recovery.find_lost_work(db, 30, 30, NOTHING_IN_BROKER)[session.id]


def test_runnable_tasks_never_dispatched_are_lost_work(db):
    session, _ = started(db)
    db.query(SessionTask).filter_by(session_id=session.id).update({"status": TaskStatus.PENDING})
    db.commit()
    age(db, Session, session.id, updated_at=60)
    assert "never dispatched" in recovery.find_lost_work(db, 30, 30, NOTHING_IN_BROKER)[session.id]


def test_children_of_a_cancelled_parent_are_orphaned(db):
    parent, _ = started(db)
    child = Session(title="child", prompt="p", parent_id=parent.id, status=SessionStatus.RUNNING)
    db.add(child)
    db.commit()
    lifecycle.apply_action(db, parent.id, "cancel")
    db.commit()
    assert recovery.orphan_children_of_halted_parents(db) == [child.id]
    db.commit()
    db.refresh(child)
    assert child.status is SessionStatus.ORPHANED
