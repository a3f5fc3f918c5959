"""Dependency types on the engine: a start_to_start successor runs beside its predecessor, a
finish_to_finish one holds its own successors until the predecessor finished."""

from app.engine import attempts
from app.engine.claim import claim
from app.engine.dispatch import dispatch_after_start
from app.engine.outcome import record_outcome
from models.enums import TaskStatus
from tests.integration.test_attempt_faults import WORKER, make_session, task
from tests.integration.test_execution import OK


def start(db, session, key, epoch, token):
    job = claim(db, session.id, task(db, session, key).id, epoch, WORKER)
    assert job is not None, key
    assert attempts.start_attempt(db, job, token)
    db.commit()
    return job


def spec_session(db, edges):
    """Tasks a, b, c with b depending on a by `edges[0]` and c on b by `edges[1]`."""
    tasks = [("a", "true", []), ("b", "true", [{"key": "a", "type": edges[0]}]),
             ("c", "true", [{"key": "b", "type": edges[1]}])]  # fmt: skip
    return make_session(db, tasks)


def test_a_start_to_start_successor_is_dispatched_when_its_predecessor_starts(db):
    session, epoch = spec_session(db, ("start_to_start", "finish_to_start"))
    assert task(db, session, "b").status is TaskStatus.PENDING
    a = start(db, session, "a", epoch, 1)
    dispatch = dispatch_after_start(db, session.id, a.task_id, epoch)
    db.commit()
    assert dispatch.runs == [[task(db, session, "b").id, task(db, session, "c").id]]
    b = start(db, session, "b", epoch, 2)  # runs while a still runs
    assert task(db, session, "a").status is TaskStatus.IN_PROGRESS
    record_outcome(db, b, epoch, OK, 0.1, 2)
    db.commit()
    assert task(db, session, "c").status is TaskStatus.READY


def test_a_finish_to_finish_successor_holds_its_successors_until_the_predecessor_finished(db):
    session, epoch = spec_session(db, ("finish_to_finish", "finish_to_start"))
    assert task(db, session, "b").status is TaskStatus.READY  # no start constraint
    a = start(db, session, "a", epoch, 1)
    b = start(db, session, "b", epoch, 2)
    record_outcome(db, b, epoch, OK, 0.1, 2)
    db.commit()
    assert task(db, session, "c").status is TaskStatus.PENDING  # a has not finished yet
    record_outcome(db, a, epoch, OK, 0.1, 1)
    db.commit()
    assert task(db, session, "c").status is TaskStatus.READY
