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


# The engine path against the route API: each task of one session is first explained by
# `POST /agents/route` (its spec's routing fields as the body), then claimed; the agent the claim
# records and the decision the engine made from the cached graph equal the API's answer.
OPENCODE = {"driver": "opencode", "endpoint": "http://127.0.0.1:4096"}
TEAM = [
    ("arch", {"type": "architect", "capabilities": [CODE, "system_design"], "capacity": 2}),
    ("impl", {"avoided_technologies": ["java"]}),
    ("py-impl", {"preferred_technologies": ["Python", "flask"], "capacity": 2}),
    ("reviewer", {"type": "reviewer", "capabilities": [CODE, "code_review"],
                  "avoided_technologies": ["python"]}),
    ("oc", {**OPENCODE, "capabilities": [CODE, "documentation"]}),
]  # fmt: skip
TASKS = [  # key, command, capabilities, technologies, estimate_hours
    ("tiny-py", "true", [CODE], ["python"], 0.1),
    ("big-java", "true", [CODE], ["Java"], 12.0),
    ("design", "true", [CODE, "system_design"], [], 6.0),
    ("prompt", None, [CODE], ["python"], 2.0),
    ("unestimated", "true", [CODE], [], None),
    ("review-py", "true", ["code_review"], ["python"], 0.5),
    ("prompt-2", None, [CODE], [], 0.5),  # the opencode agent is busy: the task waits for it
    ("flask", "true", [CODE], ["flask", "python"], 3.0),
]  # fmt: skip


def spec_of(key, command, capabilities, technologies, hours):
    return {"key": key, "title": key, "command": command, "required_capabilities": capabilities,
            "technologies": technologies, "estimate_hours": hours}  # fmt: skip


def explained(candidates):
    return [(c["agent"]["name"], c["score"], c["breakdown"], c["excluded_reason"])
            for c in candidates]  # fmt: skip


def test_the_engine_routes_every_task_as_the_route_api_explains_it(db, client):
    from app.engine.claim import claim
    from app.engine.graph_cache import session_graph
    from app.engine.launch import launch
    from app.schemas.sessions import SessionCreateSchema
    from app.services import sessions

    for name, fields in TEAM:
        add(db, name, **fields)
    data = SessionCreateSchema().load(
        {"title": "routing", "prompt": "p", "dag": {"tasks": [spec_of(*t) for t in TASKS]}}
    )
    session, _ = sessions.create_session(db, data)
    sessions.start_session(db, session)
    db.commit()
    epoch = launch(db, session.id).epoch
    db.commit()
    ids = {t.key: t.id for t in db.query(SessionTask).filter_by(session_id=session.id)}
    assert {t.key: t.technologies for t in session.tasks}["big-java"] == ["Java"]
    by_name = {a.name: a.id for a in db.query(Agent)}
    assigned = {}
    for key, *_ in TASKS:
        spec = next(spec_of(*t) for t in TASKS if t[0] == key)
        body = {name: spec[name] for name in
                ("required_capabilities", "technologies", "command", "estimate_hours")}  # fmt: skip
        api = client.post("/api/v1/agents/route", json=body)
        assert api.status_code == 200, api.json
        facts = session_graph(db, session.id).nodes[ids[key]]["routing"]
        engine = route_task(db, facts)
        db.commit()
        assert explained(api.json["candidates"]) == [
            (c.agent.name, c.score, c.breakdown, c.excluded_reason) for c in engine.candidates
        ]
        assert api.json["reason"] == engine.reason
        assert api.json["task"] == {
            "required_capabilities": list(facts.capabilities),
            "require_driver": facts.require_driver,
            "technologies": list(facts.technologies),
            "complexity": facts.complexity.value if facts.complexity else None,
        }
        job = claim(db, session.id, ids[key], epoch)
        db.commit()
        expected = api.json["assigned"]
        row = db.get(SessionTask, ids[key])
        db.refresh(row)
        if expected is None:
            assert job is None and row.status is TaskStatus.BLOCKED
            assert row.error == f"No routable agent for this task: {api.json['reason']}"
            assigned[key] = None
        else:
            assert job.agent.id == expected["id"] == row.assigned_agent_id
            assigned[key] = expected["name"]
        if api.json["chosen"] is not None:
            assert api.json["chosen"] == expected
    assert assigned == {
        "tiny-py": "py-impl",  # an implementer that prefers python, for a trivial task
        "big-java": "arch",  # impl avoids java; an architect fits an expert task best
        "design": "arch",  # the only one with system_design
        "prompt": "oc",  # no command: the opencode agent
        "unestimated": "impl",  # the least loaded specialist (arch and oc are full)
        "review-py": None,  # the only reviewer avoids python: blocked
        "prompt-2": "oc",  # at capacity: assigned to wait for its slot
        "flask": "py-impl",  # the one left with a free slot that does not avoid python
    }
    assert by_name["oc"] == db.get(SessionTask, ids["prompt-2"]).assigned_agent_id
    blocked = db.get(SessionTask, ids["review-py"]).error
    assert "avoids the task's technologies (python): reviewer" in blocked
    assert recovery_keeps_it_blocked(db)


def recovery_keeps_it_blocked(db) -> bool:
    """The reconciler routes blocked tasks with the same facts: a task blocked by avoided
    technologies is not 'unblockable' while every agent that fits avoids them."""
    from app.engine import recovery

    return recovery.sessions_to_unblock(db) == {}


def test_route_api_derives_the_driver_and_complexity_like_the_engine(db, client):
    add(db, "shell-arch", type="architect")
    add(db, "oc", **OPENCODE)
    url = "/api/v1/agents/route"
    prompt = client.post(url, json={"required_capabilities": [CODE], "estimate_hours": 9})
    assert prompt.json["task"]["require_driver"] == "opencode"
    assert prompt.json["task"]["complexity"] == "expert"
    assert prompt.json["chosen"]["name"] == "oc"
    shell = client.post(url, json={"required_capabilities": [CODE], "command": "make",
                                   "estimate_hours": 9})  # fmt: skip
    assert shell.json["chosen"]["name"] == "shell-arch"  # 1.0 complexity fit, vs 0.4
    forced = client.post(url, json={"required_capabilities": [CODE], "require_driver": "shell"})
    assert forced.json["task"]["require_driver"] == "shell"
    for body, field in [
        ({"required_capabilities": [], "complexity": "simple", "estimate_hours": 1}, "complexity"),
        ({"required_capabilities": [], "estimate_hours": -1}, "estimate_hours"),
        ({"required_capabilities": [], "command": ""}, "command"),
    ]:
        response = client.post(url, json=body)
        assert response.status_code == 422 and field in response.json["errors"], response.json
