"""Routing and the failure threshold on a real PostgreSQL: scores, filters, health."""

from app.services import agents, performance, routing
from app.services.routing import route_task
from models import Agent, Session, SessionTask
from models.enums import AgentStatus, TaskStatus

CODE = "code_generation"


def add(db, name, **fields):
    values = dict(name=name, type="implementer", driver="shell", capabilities=[CODE])
    agent = agents.register_agent(db, **{**values, **fields})
    db.commit()
    return agent


def give_work(db, agent, count=1, status=TaskStatus.IN_PROGRESS):
    session = Session(title="busy")
    db.add(session)
    for n in range(count):
        db.add(SessionTask(session=session, key=f"{agent.name}-{n}", title="t", status=status,
                           assigned_agent_id=agent.id))  # fmt: skip
    db.commit()


def test_routing_picks_by_score_and_explains_it(db):
    add(db, "generalist", capabilities=[CODE, "debugging", "refactoring", "documentation"])
    add(db, "specialist", preferred_technologies=["python"])
    decision = routing.route(db, [CODE], technologies=["python"], complexity="simple")
    assert decision.chosen.name == "specialist"
    best, second = decision.candidates
    assert best.breakdown == {"capability_fit": 1.0, "success_rate": 0.5, "load": 1.0,
                              "technology": 1.0, "complexity_fit": 1.0}  # fmt: skip
    assert best.score == 1 - 0.25 * 0.5
    assert second.breakdown["capability_fit"] == 0.25 and second.score < best.score
    assert "chose specialist" in decision.reason and "runner-up generalist" in decision.reason


def test_a_new_agent_gets_work_over_a_poor_record_and_is_never_scored_zero(db):
    veteran = add(db, "veteran")
    db.get(Agent, veteran.id).tasks_completed, db.get(Agent, veteran.id).tasks_failed = 2, 10
    db.commit()
    add(db, "newcomer")
    decision = routing.route(db, [CODE])
    assert decision.chosen.name == "newcomer"
    newcomer = decision.candidates[0]
    assert newcomer.breakdown["success_rate"] == 0.5 and newcomer.score > 0
    assert route_task(db, [CODE]).waitable.name == "newcomer"


def test_hard_filters_exclude_with_reasons(db):
    add(db, "ok")
    add(db, "asleep", maintenance=True)
    add(db, "dev-null", avoided_technologies=["java"])
    add(db, "reviewer", capabilities=["code_review"])
    full = add(db, "full", capacity=2)
    give_work(db, full, 2)
    sick = add(db, "sick")
    db.get(Agent, sick.id).status = AgentStatus.UNHEALTHY
    db.commit()
    decision = routing.route(db, [CODE], technologies=["Java"], require_driver="shell")
    reasons = {c.agent.name: c.excluded_reason for c in decision.candidates}
    assert reasons == {
        "ok": None,
        "asleep": "in maintenance",
        "dev-null": "avoids technologies: java",
        "reviewer": "missing capabilities: code_generation",
        "full": "at capacity (2/2)",
        "sick": "unhealthy",
    }
    assert decision.chosen.name == "ok"
    none = routing.route(db, [CODE], require_driver="opencode")
    assert none.chosen is None and "the task needs opencode" in none.reason


def test_maintenance_and_unhealthy_agents_are_skipped(db):
    resting = add(db, "a-resting")
    sick = add(db, "b-sick")
    add(db, "c-worker")
    agents.set_maintenance(db, resting.id, True, "disk full")
    db.get(Agent, sick.id).status = AgentStatus.UNHEALTHY
    db.commit()
    assert route_task(db, [CODE]).waitable.name == "c-worker"
    assert agents.missing_capabilities(db, [[CODE]]) == []


def test_busy_agents_are_chosen_only_as_a_queue_to_wait_on(db):
    one = add(db, "one")
    two = add(db, "two", capacity=2)
    give_work(db, one)
    give_work(db, two, 1, status=TaskStatus.ASSIGNED)
    assert route_task(db, [CODE]).waitable.name == "two"
    give_work(db, two, 1)
    decision = routing.route(db, [CODE])
    assert decision.chosen is None and "at capacity" in decision.reason
    assert route_task(db, [CODE]).waitable.name == "one"  # least loaded: 1/1 == 2/2, then name
    assert route_task(db, [CODE]).chosen is None


def test_failure_threshold_takes_an_agent_out_and_an_operator_brings_it_back(db):
    flaky = add(db, "flaky")
    add(db, "z-backup")
    for _ in range(2):
        performance.note_outcome(db, flaky.id, False, threshold=3)
    performance.note_outcome(db, flaky.id, True, threshold=3)
    assert db.get(Agent, flaky.id).consecutive_failures == 0
    for _ in range(3):
        performance.note_outcome(db, flaky.id, False, threshold=3)
    db.commit()
    agent = db.get(Agent, flaky.id)
    assert (agent.status, agent.health_reason) == (AgentStatus.UNHEALTHY, "3 consecutive failures")
    assert route_task(db, [CODE]).waitable.name == "z-backup"
    agents.record_heartbeat(db, flaky.id)  # alive, but the streak was not reset
    assert db.get(Agent, flaky.id).status is AgentStatus.UNHEALTHY
    agents.update_agent(db, flaky.id, status=AgentStatus.ACTIVE)
    db.commit()
    agent = db.get(Agent, flaky.id)
    assert (agent.status, agent.health_reason, agent.consecutive_failures) == (
        AgentStatus.ACTIVE, None, 0)  # fmt: skip
    assert route_task(db, [CODE]).waitable.name == "flaky"


def test_default_threshold_is_five_and_configurable(db, app):
    agent = add(db, "steady")
    for _ in range(4):
        performance.note_outcome(db, agent.id, False)
    assert db.get(Agent, agent.id).status is AgentStatus.ACTIVE
    performance.note_outcome(db, agent.id, False)
    assert db.get(Agent, agent.id).health_reason == "5 consecutive failures"
    app.config["AGENT_FAILURE_THRESHOLD"] = 2
    try:
        other = add(db, "other")
        performance.note_outcome(db, other.id, False)
        performance.note_outcome(db, other.id, False)
        assert db.get(Agent, other.id).status is AgentStatus.UNHEALTHY
    finally:
        del app.config["AGENT_FAILURE_THRESHOLD"]
