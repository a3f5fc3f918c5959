"""The execution engine's steps on a real PostgreSQL: launch, claim, outcome, joins, fencing."""

import threading

import pytest
from sqlalchemy.orm import Session as DbSession

from app.drivers.base import DriverResult
from app.engine import attempts
from app.engine.claim import claim
from app.engine.launch import launch
from app.engine.outcome import record_outcome
from app.extensions import db as database
from app.services import agents, sessions
from models import Checkpoint, Session, SessionEvent, SessionTask
from models.enums import AgentCapability, SessionStatus, TaskStatus

OK = DriverResult(succeeded=True, summary="done")


def make_session(db, tasks, agent_caps=("code_generation",)):
    agents.register_agent(
        db,
        name="runner",
        type="implementer",
        driver="shell",
        capabilities=list(agent_caps),
        capacity=8,
    )
    specs = [
        {
            "key": key,
            "description": "",
            "command": "true",
            "required_capabilities": [AgentCapability(c) for c in caps],
            "depends_on": deps,
            "optional": optional,
            "timeout_seconds": 60,
            "max_attempts": 2,
            "estimate_hours": None,
        }
        for key, deps, caps, optional in tasks
    ]
    data = {"title": "t", "prompt": "p", "dag": {"tasks": specs}}
    session, _ = sessions.create_session(db, data)
    sessions.start_session(db, session)
    db.commit()
    return session


def task_ids(db, session):
    return {t.key: t.id for t in db.query(SessionTask).filter_by(session_id=session.id)}


def keys_of(db, session, runs):
    by_id = {v: k for k, v in task_ids(db, session).items()}
    return [[by_id[i] for i in run] for run in runs]


class FixedSlot:
    """A slot source for `claim` that offers the same token (or None: the agent is busy)."""

    def __init__(self, token, offered=None):
        self.token, self.offered = token, offered

    def __call__(self, agent, workdir):
        if self.offered is not None:
            self.offered.append((agent.name, workdir))
        return self.token

    def release(self):
        return False

    def spare(self, agent):
        return 0


def claim_and_start(db, session_id, task_id, epoch, token=1):
    job = claim(db, session_id, task_id, epoch)
    assert job is not None
    assert attempts.start_attempt(db, job, token)
    db.commit()
    return job


def run_one(db, session_id, task_id, epoch, outcome=OK, token=1):
    job = claim_and_start(db, session_id, task_id, epoch, token)
    dispatch = record_outcome(db, job, epoch, outcome, 0.01, token)
    db.commit()
    return dispatch


def test_launch_dispatches_roots_as_chains_and_bumps_the_epoch(db):
    session = make_session(
        db,
        [
            ("a", [], [], False),
            ("b", ["a"], [], False),
            ("c", [], [], False),
            ("j", ["b", "c"], [], False),
        ],
    )
    dispatch = launch(db, session.id)
    db.commit()
    assert dispatch.epoch == 1
    assert sorted(keys_of(db, session, dispatch.runs)) == [["a", "b"], ["c"]]
    db.refresh(session)
    assert session.status is SessionStatus.RUNNING


def test_a_task_runs_once_per_epoch_and_stale_messages_are_no_ops(db):
    session = make_session(db, [("a", [], [], False)])
    dispatch = launch(db, session.id)
    db.commit()
    (task_id,) = dispatch.runs[0]
    job = claim_and_start(db, session.id, task_id, dispatch.epoch)
    assert job.attempt == 1
    assert claim(db, session.id, task_id, dispatch.epoch) is None
    assert claim(db, session.id, task_id, dispatch.epoch - 1) is None
    assert record_outcome(db, job, dispatch.epoch, OK, 0.1, 1) is not None
    db.commit()
    stale = record_outcome(db, job, dispatch.epoch, OK, 0.1, 1)
    db.commit()
    assert stale is None
    task = db.get(SessionTask, task_id)
    db.refresh(task)
    assert task.status is TaskStatus.COMPLETED and task.executions == 1
    assert db.query(Checkpoint).filter_by(session_id=session.id).count() == 1
    assert db.query(SessionEvent).filter_by(type="task.outcome_rejected").count() == 1
    db.refresh(session)
    assert session.status is SessionStatus.COMPLETED


def test_join_is_dispatched_exactly_once_when_predecessors_finish_together(app, db):
    session = make_session(
        db, [("a", [], [], False), ("b", [], [], False), ("j", ["a", "b"], [], False)]
    )
    dispatch = launch(db, session.id)
    db.commit()
    ids = task_ids(db, session)
    jobs = {}
    for key in ("a", "b"):
        jobs[key] = claim_and_start(db, session.id, ids[key], dispatch.epoch)
    barrier = threading.Barrier(2)
    results = {}

    errors = []

    def finish(key):
        try:
            with DbSession(bind=database.engine) as own:
                barrier.wait()
                results[key] = record_outcome(own, jobs[key], dispatch.epoch, OK, 0.1, 1)
                own.commit()
        except Exception as error:  # a deadlock or any error must fail the test, not a warning
            errors.append(error)

    threads = [threading.Thread(target=finish, args=(key,)) for key in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    dispatched = [run for result in results.values() for run in result.runs]
    assert dispatched == [[ids["j"]]]


def test_failure_skips_dependents_and_fails_the_session(db):
    session = make_session(
        db, [("a", [], [], False), ("b", ["a"], [], False), ("c", [], [], False)]
    )
    dispatch = launch(db, session.id)
    db.commit()
    ids = task_ids(db, session)
    run_one(db, session.id, ids["a"], dispatch.epoch, DriverResult(succeeded=False, error="boom"))
    run_one(db, session.id, ids["c"], dispatch.epoch)
    db.refresh(session)
    statuses = {t.key: t.status for t in db.query(SessionTask).filter_by(session_id=session.id)}
    db.expire_all()
    assert statuses == {"a": TaskStatus.FAILED, "b": TaskStatus.SKIPPED, "c": TaskStatus.COMPLETED}
    assert session.status is SessionStatus.FAILED
    assert "a" in session.error


def test_optional_failure_gives_partially_completed(db):
    session = make_session(
        db, [("a", [], [], True), ("b", [{"key": "a", "required": False}], [], False)]
    )
    dispatch = launch(db, session.id)
    db.commit()
    ids = task_ids(db, session)
    follow = run_one(
        db, session.id, ids["a"], dispatch.epoch, DriverResult(succeeded=False, error="x")
    )
    assert follow is None or follow.runs == []  # b was chained behind a
    run_one(db, session.id, ids["b"], dispatch.epoch)
    db.refresh(session)
    assert session.status is SessionStatus.PARTIALLY_COMPLETED


def test_retryable_failure_is_retried_until_attempts_run_out(db):
    session = make_session(db, [("a", [], [], False)])
    dispatch = launch(db, session.id)
    db.commit()
    (task_id,) = dispatch.runs[0]
    flaky = DriverResult(succeeded=False, error="timed out", retryable=True)
    retry = run_one(db, session.id, task_id, dispatch.epoch, flaky)
    assert retry.retry_in is not None and retry.retry_in > 0
    final = run_one(db, session.id, task_id, dispatch.epoch, flaky)
    assert final.retry_in is None
    task = db.get(SessionTask, task_id)
    db.refresh(task)
    assert (task.status, task.attempt) == (TaskStatus.FAILED, 2)


def test_claim_without_a_capable_agent_blocks_the_task_with_the_reason(db):
    session = make_session(db, [("a", [], ["code_generation"], False)])
    dispatch = launch(db, session.id)
    db.query(SessionTask).filter_by(session_id=session.id).one()
    from models import Agent

    db.query(Agent).update({"maintenance": True})
    db.commit()
    (task_id,) = dispatch.runs[0]
    assert claim(db, session.id, task_id, dispatch.epoch) is None
    db.commit()
    task = db.get(SessionTask, task_id)
    db.refresh(task)
    assert task.status is TaskStatus.BLOCKED
    assert "runner (in maintenance)" in task.error


def test_launch_of_a_finished_session_does_nothing(db):
    session = make_session(db, [("a", [], [], False)])
    db.get(Session, session.id).status = SessionStatus.CANCELLED
    db.commit()
    assert launch(db, session.id) is None


def test_launch_of_an_unknown_session_is_not_found(db):
    from app.services.errors import NotFound

    with pytest.raises(NotFound):
        launch(db, "missing")


def test_a_join_is_not_chained_behind_one_predecessor_while_another_still_runs(db):
    session = make_session(
        db,
        [
            ("y", [], [], False),
            ("x0", [], [], False),
            ("x", ["x0"], [], False),
            ("j", ["x", "y"], [], False),
        ],
    )
    dispatch = launch(db, session.id)
    db.commit()
    ids = task_ids(db, session)
    assert sorted(keys_of(db, session, dispatch.runs)) == [["x0", "x"], ["y"]]
    y_job = claim_and_start(db, session.id, ids["y"], dispatch.epoch)
    run_one(db, session.id, ids["x0"], dispatch.epoch)
    follow = run_one(db, session.id, ids["x"], dispatch.epoch)
    assert follow.runs == []  # y still runs: j waits
    last = record_outcome(db, y_job, dispatch.epoch, OK, 0.1, 1)
    db.commit()
    assert keys_of(db, session, last.runs) == [["j"]]


def test_a_task_claimed_before_its_predecessor_finished_goes_back_to_waiting(db):
    session = make_session(db, [("a", [], [], False), ("b", ["a"], [], False)])
    dispatch = launch(db, session.id)
    db.commit()
    ids = task_ids(db, session)
    assert claim(db, session.id, ids["b"], dispatch.epoch) is None
    db.commit()
    task = db.get(SessionTask, ids["b"])
    db.refresh(task)
    assert task.status is TaskStatus.PENDING
    follow = run_one(db, session.id, ids["a"], dispatch.epoch)
    assert keys_of(db, session, follow.runs) == [["b"]]


def test_a_stale_lease_holders_write_is_rejected_by_the_fencing_token(db):
    session = make_session(db, [("a", [], [], False)])
    dispatch = launch(db, session.id)
    db.commit()
    (task_id,) = dispatch.runs[0]
    job = claim(db, session.id, task_id, dispatch.epoch)
    assert attempts.start_attempt(db, job, fence_token=41)
    db.commit()
    # A newer holder of the agent's lease (token 42) wrote first: token 41 is stale now.
    db.query(SessionTask).filter_by(id=task_id).update({"fence_token": 42})
    db.commit()
    assert record_outcome(db, job, dispatch.epoch, OK, 0.1, 41) is None
    db.commit()
    task = db.get(SessionTask, task_id)
    db.refresh(task)
    assert task.status is TaskStatus.IN_PROGRESS
    rejected = db.query(SessionEvent).filter_by(type="task.outcome_rejected").count()
    assert rejected == 1
    assert not attempts.start_attempt(db, job, fence_token=40)


def test_a_successor_receives_its_predecessors_output_as_context(db):
    session = make_session(db, [("a", [], [], False), ("b", ["a"], [], False)])
    dispatch = launch(db, session.id)
    db.commit()
    ids = task_ids(db, session)
    done = DriverResult(succeeded=True, summary="wrote api.py", files_changed=["api.py"])
    job = claim_and_start(db, session.id, ids["a"], dispatch.epoch)
    record_outcome(db, job, dispatch.epoch, done, 0.1, 1)
    db.commit()
    successor = claim(db, session.id, ids["b"], dispatch.epoch)
    assert successor.context["predecessors"]["a"]["summary"] == "wrote api.py"
    assert "wrote api.py" in successor.prompt


def test_a_claim_holding_a_free_slot_starts_the_attempt_at_once(db):
    session = make_session(db, [("a", [], [], False), ("b", [], [], False)])
    dispatch = launch(db, session.id)
    db.commit()
    ids = task_ids(db, session)
    offered = []
    job = claim(db, session.id, ids["a"], dispatch.epoch, "w1", FixedSlot(7, offered))
    db.commit()
    assert offered == [("runner", session.workdir or "")]
    assert job.started_token == 7
    task = db.get(SessionTask, ids["a"])
    db.refresh(task)
    assert (task.status, task.fence_token, task.executions) == (TaskStatus.IN_PROGRESS, 7, 1)
    types = [e.type for e in db.query(SessionEvent).filter_by(task_id=ids["a"])]
    assert types == ["task.assigned", "task.started"]
    assert record_outcome(db, job, dispatch.epoch, OK, 0.1, 7) is not None
    db.commit()
    # A busy agent (no free slot): the task stays ready, parked in the agent's wait list.
    waiting = claim(db, session.id, ids["b"], dispatch.epoch, "w1", FixedSlot(None))
    db.commit()
    assert waiting.task_id == ids["b"] and waiting.agent_id == job.agent.id
    db.refresh(task := db.get(SessionTask, ids["b"]))
    assert task.status is TaskStatus.READY and task.executions == 0
    assert task.waiting_agent_id == job.agent.id and task.waiting_since is not None


def test_a_slot_token_older_than_the_tasks_fence_only_assigns(db):
    session = make_session(db, [("a", [], [], False)])
    dispatch = launch(db, session.id)
    db.query(SessionTask).filter_by(session_id=session.id).update({"fence_token": 50})
    db.commit()
    (task_id,) = dispatch.runs[0]
    job = claim(db, session.id, task_id, dispatch.epoch, "w1", FixedSlot(3))
    db.commit()
    assert job is not None and job.started_token is None
    assert not attempts.start_attempt(db, job, 3)


def test_a_stale_message_with_a_free_slot_claims_nothing(db):
    session = make_session(db, [("a", [], [], False)])
    dispatch = launch(db, session.id)
    db.commit()
    (task_id,) = dispatch.runs[0]
    assert claim(db, session.id, task_id, dispatch.epoch - 1, "w1", FixedSlot(5)) is None
    db.commit()
    task = db.get(SessionTask, task_id)
    db.refresh(task)
    assert task.status is TaskStatus.READY and task.executions == 0
