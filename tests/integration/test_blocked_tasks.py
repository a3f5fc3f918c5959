"""Blocked tasks resume when an agent that fits becomes available, on real PostgreSQL: each way
of making one available is noted for a wake-up after the commit, the wake-up relaunches the
session, and the reconciler finds what a wake-up missed."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from app.engine import recovery
from app.engine.claim import claim
from app.engine.launch import launch
from app.services import agents
from app.services.maintenance import HealthPolicy, record_health
from models import Agent, SessionEvent, SessionTask
from models.base import utcnow
from models.enums import AgentStatus, TaskStatus
from tests.integration.test_execution import make_session, task_ids

NOTHING_IN_BROKER = lambda _id: False  # noqa: E731
EVERYTHING_IN_BROKER = lambda _id: True  # noqa: E731


def runner(db) -> Agent:
    return db.scalars(select(Agent).where(Agent.name == "runner")).one()


def make_one_task_session(db, command: str | None):
    session = make_session(db, [("a", [], ["code_generation"], False)])
    if command is None:  # before anything read the DAG: a prompt for an opencode agent
        db.execute(update(SessionTask).where(SessionTask.session_id == session.id)
                   .values(command=None))  # fmt: skip
        db.commit()
    return session


def block_task(db, how: str = "maintenance", command: str | None = "true"):
    """A running session whose only task is blocked: its one agent went away before the claim."""
    session = make_one_task_session(db, command)
    agent = runner(db)
    if how == "maintenance":
        agents.set_maintenance(db, agent.id, True, "disk full")
    elif how == "inactive":
        agents.deregister_agent(db, agent.id)
    else:  # unhealthy after failed health checks
        agent.status, agent.consecutive_failures = AgentStatus.UNHEALTHY, 2
        agent.health_reason = "server unreachable (cannot connect)"
    db.commit()
    agents.take_available(db)
    dispatch = launch(db, session.id)
    task_id = task_ids(db, session)["a"]
    assert claim(db, session.id, task_id, dispatch.epoch) is None
    db.commit()
    assert status_of(db, task_id) is TaskStatus.BLOCKED
    assert recovery.sessions_to_unblock(db) == {}
    return session, task_id, agent


def status_of(db, task_id):
    db.expire_all()
    return db.get(SessionTask, task_id).status


def maintenance_off(db, agent):
    return agents.set_maintenance(db, agent.id, False)


def health_restored(db, agent):
    record_health(db, agent.id, None, True, HealthPolicy())  # the probe answered healthy
    return agent


def registered(db, agent):
    return agents.register_agent(db, name="newcomer", type="implementer", driver="shell",
                                 capabilities=["code_generation"])  # fmt: skip


def capacity_raised(db, agent):
    # Routing never blocks a task for capacity alone (it waits for a slot), so the agent comes
    # back by hand in SQL, which wakes nobody; raising its capacity then does.
    db.execute(update(Agent).where(Agent.id == agent.id).values(maintenance=False))
    return agents.update_agent(db, agent.id, capacity=16)


def status_active(db, agent):
    return agents.update_agent(db, agent.id, status=AgentStatus.ACTIVE)


def heartbeat(db, agent):
    db.get(Agent, agent.id).consecutive_failures = 0  # an operator or a task reset the streak
    return agents.record_heartbeat(db, agent.id)


WAYS = [
    ("maintenance", maintenance_off),
    ("unhealthy", health_restored),
    ("maintenance", registered),
    ("maintenance", capacity_raised),
    ("inactive", status_active),
    ("unhealthy", heartbeat),
]


@pytest.mark.parametrize(("blocked_by", "make_available"), WAYS,
                         ids=[way.__name__ for _, way in WAYS])  # fmt: skip
def test_an_agent_made_available_wakes_and_relaunches_the_session(db, blocked_by, make_available):
    session, task_id, agent = block_task(db, blocked_by)
    available = make_available(db, agent)
    db.commit()
    assert agents.take_available(db) == {available.id}  # the API wakes sessions with these
    assert agents.take_available(db) == set()
    due = recovery.sessions_to_unblock(db)
    assert list(due) == [session.id] and available.name in due[session.id]

    dispatch = recovery.resume_blocked(db, session.id, 30)
    db.commit()
    assert dispatch is not None and dispatch.runs == [[task_id]]
    assert status_of(db, task_id) is TaskStatus.READY
    job = claim(db, session.id, task_id, dispatch.epoch)
    db.commit()
    assert job is not None and job.agent.id == available.id
    events = db.scalars(select(SessionEvent.type).where(SessionEvent.session_id == session.id))
    assert "session.unblocked" in list(events)
    # Idempotent: a second delivery of the wake-up finds nothing blocked and changes nothing.
    assert recovery.resume_blocked(db, session.id, 30) is None


def test_changes_that_do_not_make_an_agent_available_wake_nobody(db):
    session, task_id, agent = block_task(db)
    agents.update_agent(db, agent.id, capacity=16)  # still in maintenance
    agents.record_heartbeat(db, agent.id)
    db.commit()
    assert agents.take_available(db) == set()
    other = agents.register_agent(db, name="reviewer", type="reviewer", driver="shell",
                                  capabilities=["code_review"])  # fmt: skip
    db.commit()
    assert agents.take_available(db) == {other.id}  # routable, but it does not fit the task
    assert recovery.sessions_to_unblock(db) == {}
    assert recovery.resume_blocked(db, session.id, 30) is None
    assert status_of(db, task_id) is TaskStatus.BLOCKED


def test_a_task_without_a_command_waits_for_an_opencode_agent(db):
    session, task_id, agent = block_task(db, command=None)
    agents.set_maintenance(db, agent.id, False)  # a shell agent: it cannot run a prompt
    db.commit()
    assert recovery.sessions_to_unblock(db) == {}
    agents.register_agent(db, name="oc", type="implementer", driver="opencode",
                          endpoint="http://127.0.0.1:9",
                          capabilities=["code_generation"])  # fmt: skip
    db.commit()
    assert "fits agent oc" in recovery.sessions_to_unblock(db)[session.id]


def test_the_reconciler_reports_a_blocked_task_that_an_agent_can_now_take(db):
    session, task_id, agent = block_task(db)
    assert recovery.find_lost_work(db, 30, 30, NOTHING_IN_BROKER) == {}
    # The agent comes back without any wake-up (by hand in SQL, or the wake-up was lost).
    db.execute(update(Agent).where(Agent.id == agent.id).values(maintenance=False))
    db.commit()
    lost = recovery.find_lost_work(db, 30, 30, EVERYTHING_IN_BROKER)
    assert recovery.is_unblock(lost[session.id]) and "fits agent runner" in lost[session.id]
    dispatch = recovery.resume_blocked(db, session.id, 30)
    db.commit()
    assert dispatch.runs == [[task_id]] and status_of(db, task_id) is TaskStatus.READY
    assert recovery.find_lost_work(db, 30, 30, EVERYTHING_IN_BROKER) == {}


def test_the_reconciler_leaves_a_blocked_task_alone_while_nothing_fits(db):
    session, task_id, agent = block_task(db)
    db.execute(update(Agent).where(Agent.id == agent.id).values(
        maintenance=False, capabilities=["code_review"], last_heartbeat_at=utcnow()))  # fmt: skip
    db.commit()
    assert recovery.find_lost_work(db, 30, 30, EVERYTHING_IN_BROKER) == {}
    assert recovery.resume_blocked(db, session.id, 30) is None
    assert status_of(db, task_id) is TaskStatus.BLOCKED
