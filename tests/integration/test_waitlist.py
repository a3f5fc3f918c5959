"""Agent wait lists on real PostgreSQL and Redis: rank (priority, fairness, aging), race-safe
wake-ups, and a claim that gives its slot back to a better waiter."""

import threading
from datetime import timedelta

from flask import current_app
from sqlalchemy import update
from sqlalchemy.orm import Session as DbSession

from app.engine import slots, waitlist
from app.engine.claim import claim
from app.engine.launch import launch
from app.extensions import db as database
from app.services import agents, sessions
from models import SessionTask
from models.base import utcnow
from models.enums import SessionPriority, TaskStatus

CRITICAL, MEDIUM, DEFERRED = (SessionPriority.CRITICAL.value, SessionPriority.MEDIUM.value,
                              SessionPriority.DEFERRED.value)  # fmt: skip


def shell_agent(db, capacity=1, name="sh"):
    agent = agents.register_agent(db, name=name, type="implementer", driver="shell",
                                  capabilities=["code_generation"], capacity=capacity)  # fmt: skip
    db.commit()
    return agent


def one_task_session(db, priority, keys=("a",)):
    """A launched session of independent `true` tasks: (session id, epoch, task ids by key)."""
    specs = [{"key": key, "description": "", "command": "true", "required_capabilities": [],
              "depends_on": [], "optional": False, "timeout_seconds": 60, "max_attempts": 2,
              "estimate_hours": None} for key in keys]  # fmt: skip
    data = {"title": "t", "prompt": "p", "priority": priority, "dag": {"tasks": specs}}
    session, _ = sessions.create_session(
        db, data, workspace_root=current_app.config["WORKSPACE_ROOT"]
    )
    sessions.start_session(db, session)
    db.commit()
    epoch = launch(db, session.id).epoch
    db.commit()
    ids = {t.key: t.id for t in db.query(SessionTask).filter_by(session_id=session.id)}
    return session.id, epoch, ids


def park(db, task_id, agent_id, waited_s, woken=False):
    now = utcnow()
    db.execute(
        update(SessionTask).where(SessionTask.id == task_id).values(
            waiting_agent_id=agent_id, waiting_since=now - timedelta(seconds=waited_s),
            woken_at=now if woken else None,
        )
    )  # fmt: skip
    db.commit()


class FixedSlot:
    def __init__(self, token, spare=0):
        self.token, self._spare, self.released = token, spare, 0

    def __call__(self, agent, workdir):
        return self.token

    def release(self):
        self.released += 1
        return True

    def spare(self, agent):
        return self._spare


def test_priority_first_then_fairness_then_waiting_time(db, app):
    agent = shell_agent(db, capacity=4)
    _, _, old_medium = one_task_session(db, MEDIUM)
    _, _, new_medium = one_task_session(db, MEDIUM)
    _, _, critical = one_task_session(db, CRITICAL)
    busy_sid, _, busy = one_task_session(db, MEDIUM, keys=("running", "waiting"))
    park(db, old_medium["a"], agent.id, waited_s=20)
    park(db, new_medium["a"], agent.id, waited_s=5)
    park(db, critical["a"], agent.id, waited_s=1)
    park(db, busy["waiting"], agent.id, waited_s=30)  # waited longest, but its session runs one
    db.execute(update(SessionTask).where(SessionTask.id == busy["running"]).values(
        status=TaskStatus.IN_PROGRESS, assigned_agent_id=agent.id))  # fmt: skip
    db.commit()
    assert waitlist.ordered(db, agent.id) == [
        critical["a"], old_medium["a"], new_medium["a"], busy["waiting"]
    ]  # fmt: skip


def test_aging_lets_an_old_deferred_task_beat_new_medium_ones(db, app, monkeypatch):
    monkeypatch.setitem(app.config, "WAIT_AGING_SECONDS", 60)
    agent = shell_agent(db)
    _, _, deferred = one_task_session(db, DEFERRED)
    _, _, medium_1 = one_task_session(db, MEDIUM)
    _, _, medium_2 = one_task_session(db, MEDIUM)
    park(db, deferred["a"], agent.id, waited_s=90)  # 4 - 1 step: still behind medium (2)
    park(db, medium_1["a"], agent.id, waited_s=2)
    park(db, medium_2["a"], agent.id, waited_s=1)
    assert waitlist.ordered(db, agent.id) == [medium_1["a"], medium_2["a"], deferred["a"]]
    park(db, deferred["a"], agent.id, waited_s=130)  # 4 - 2 steps: equal to medium, and older
    assert waitlist.ordered(db, agent.id) == [deferred["a"], medium_1["a"], medium_2["a"]]
    park(db, deferred["a"], agent.id, waited_s=3600)  # never better than critical (0), never lost
    _, _, critical = one_task_session(db, CRITICAL)
    park(db, critical["a"], agent.id, waited_s=0)
    assert waitlist.ordered(db, agent.id)[:2] == [deferred["a"], critical["a"]]


def test_two_slots_freeing_at_once_wake_two_distinct_waiters(db, app, redis_client):
    agent = shell_agent(db, capacity=3)
    waiting = []
    for waited in (30, 20, 10):
        _, _, ids = one_task_session(db, MEDIUM)
        park(db, ids["a"], agent.id, waited_s=waited)
        waiting.append(ids["a"])
    holder = slots.agent_semaphore(agent.id, 3).try_acquire(owner="still-running")
    assert holder is not None  # two of three slots are free
    first = DbSession(bind=database.engine, expire_on_commit=False)
    second = DbSession(bind=database.engine, expire_on_commit=False)
    try:
        with first.begin():
            woken_first = waitlist.wake(first, agent.id)  # row locks held until commit
            results = {}

            def wake_second():
                with app.app_context(), second.begin():
                    results["second"] = waitlist.wake(second, agent.id)

            thread = threading.Thread(target=wake_second)
            thread.start()
            thread.join(30)
            assert not thread.is_alive(), "SKIP LOCKED must not wait for the first wake-up"
        woken_second = results["second"]
    finally:
        first.close()
        second.close()
        holder.release()
    ids_first = [run[0] for d in woken_first for run in d.runs]
    ids_second = [run[0] for d in woken_second for run in d.runs]
    assert ids_first == waiting[:2]  # the two best, one per free slot
    assert ids_second == [waiting[2]]  # the one nobody had locked; none woken twice
    # Both slots are now promised: another wake-up sends nobody.
    assert waitlist.wake(db, agent.id) == []


def test_a_new_claim_gives_its_slot_back_to_a_better_woken_waiter(db, app, redis_client):
    agent = shell_agent(db)
    critical_sid, critical_epoch, critical = one_task_session(db, CRITICAL)
    park(db, critical["a"], agent.id, waited_s=1, woken=True)  # a slot freed for it just now
    deferred_sid, deferred_epoch, deferred = one_task_session(db, DEFERRED)
    slot = FixedSlot(5)
    parked = claim(db, deferred_sid, deferred["a"], deferred_epoch, "w", slot)
    db.commit()
    assert isinstance(parked, waitlist.Parked) and slot.released == 1
    task = db.get(SessionTask, deferred["a"])
    db.refresh(task)
    assert task.status is TaskStatus.READY and task.waiting_agent_id == agent.id
    # The woken critical task is the best waiter: it keeps the slot and starts.
    job = claim(db, critical_sid, critical["a"], critical_epoch, "w", FixedSlot(6))
    db.commit()
    assert job.started_token == 6
    task = db.get(SessionTask, critical["a"])
    db.refresh(task)
    assert task.status is TaskStatus.IN_PROGRESS and task.waiting_agent_id is None


def test_a_waiter_of_an_agent_out_of_service_is_woken_to_be_routed_again(db, app, redis_client):
    agent = shell_agent(db)
    _, _, ids = one_task_session(db, MEDIUM)
    park(db, ids["a"], agent.id, waited_s=5)
    holder = slots.agent_semaphore(agent.id, 1).try_acquire(owner="still-running")
    try:
        assert waitlist.wake(db, agent.id) == []  # no free slot
        agents.set_maintenance(db, agent.id, True, "upgrade")
        db.commit()
        (dispatch,) = waitlist.wake(db, agent.id)
        assert dispatch.runs == [[ids["a"]]]
    finally:
        holder.release()


def test_a_waiter_whose_wake_up_was_lost_is_woken_again_after_the_grace(db, app, monkeypatch):
    monkeypatch.setitem(app.config, "WAIT_WOKEN_GRACE_SECONDS", 30)
    agent = shell_agent(db)
    _, _, ids = one_task_session(db, MEDIUM)
    park(db, ids["a"], agent.id, waited_s=60, woken=True)  # woken just now: its message is due
    assert waitlist.wake(db, agent.id) == []  # the one free slot is promised to it
    db.execute(update(SessionTask).where(SessionTask.id == ids["a"]).values(
        woken_at=utcnow() - timedelta(seconds=31)))  # fmt: skip
    db.commit()
    (dispatch,) = waitlist.wake(db, agent.id)  # its message never came: it is sent again
    assert dispatch.runs == [[ids["a"]]]
    assert waitlist.agents_with_waiters(db) == [agent.id]
