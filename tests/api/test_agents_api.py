"""Agents over HTTP: update, deregister, maintenance, heartbeat, performance and route dry runs."""

import pytest

from app.services import performance
from models import Agent, Session, SessionTask
from models.enums import TaskStatus

BASE = "/api/v1/agents"
CODER = {"name": "coder", "type": "implementer", "driver": "shell",
         "capabilities": ["code_generation"]}  # fmt: skip


def register(client, **fields):
    response = client.post(BASE, json={**CODER, **fields})
    assert response.status_code == 201, response.json
    return response.json


def test_patch_changes_settings_and_keeps_secrets_hidden(client, db):
    agent = register(client)
    response = client.patch(f"{BASE}/{agent['id']}", json={
        "capacity": 4, "preferred_technologies": ["python"], "model": "m1",
        "config": {"token": "s3cret"}})  # fmt: skip
    assert response.status_code == 200
    assert (response.json["capacity"], response.json["model"]) == (4, "m1")
    assert response.json["preferred_technologies"] == ["python"]
    assert "s3cret" not in response.get_data(as_text=True)
    assert client.patch(f"{BASE}/{agent['id']}", json={}).json["capacity"] == 4


def test_patch_validation_conflicts_and_unknown_ids(client, db):
    agent = register(client)
    register(client, name="other")
    url = f"{BASE}/{agent['id']}"
    assert client.patch(url, json={"name": "other"}).status_code == 409
    for body, field in [({"capacity": 0}, "capacity"), ({"driver": "opencode"}, "endpoint"),
                        ({"status": "unhealthy"}, "status"), ({"color": "red"}, "color"),
                        ({"capabilities": ["flying"]}, "capabilities")]:  # fmt: skip
        response = client.patch(url, json=body)
        assert response.status_code == 422, body
        assert field in response.json["errors"], response.json
    switched = client.patch(url, json={"driver": "opencode", "endpoint": "http://127.0.0.1:4096"})
    assert switched.json["driver"] == "opencode"
    assert client.patch(f"{BASE}/nope", json={"capacity": 2}).status_code == 404


def test_delete_refuses_while_busy_then_deactivates(client, db):
    agent = register(client)
    session = Session(title="busy")
    db.add(SessionTask(session=session, key="t", title="t", status=TaskStatus.IN_PROGRESS,
                       assigned_agent_id=agent["id"]))  # fmt: skip
    db.commit()
    busy = client.delete(f"{BASE}/{agent['id']}")
    assert busy.status_code == 409 and "1 task(s)" in busy.json["message"]
    db.query(SessionTask).update({"status": TaskStatus.COMPLETED})
    db.commit()
    assert client.delete(f"{BASE}/{agent['id']}").status_code == 204
    assert client.get(f"{BASE}/{agent['id']}").json["status"] == "inactive"
    assert client.post(f"{BASE}/{agent['id']}/heartbeat").status_code == 409
    assert client.delete(f"{BASE}/nope").status_code == 404
    revived = client.patch(f"{BASE}/{agent['id']}", json={"status": "active"})
    assert revived.json["status"] == "active"


def test_maintenance_on_and_off(client, db):
    agent = register(client)
    url = f"{BASE}/{agent['id']}/maintenance"
    on = client.post(url, json={"on": True, "reason": "upgrading model"})
    assert on.status_code == 200
    assert (on.json["maintenance"], on.json["maintenance_reason"]) == (True, "upgrading model")
    assert client.get(f"{BASE}?maintenance=true").json[0]["name"] == "coder"
    shell_task = {"required_capabilities": ["code_generation"], "command": "make"}
    route = client.post(f"{BASE}/route", json=shell_task)
    assert route.json["chosen"] is None
    assert route.json["candidates"][0]["excluded_reason"] == "in maintenance: upgrading model"
    off = client.post(url, json={"on": False})
    assert (off.json["maintenance"], off.json["maintenance_reason"]) == (False, None)
    assert client.get(f"{BASE}?maintenance=true").json == []
    assert client.post(url, json={}).json["errors"].keys() == {"on"}
    assert client.post(f"{BASE}/nope/maintenance", json={"on": True}).status_code == 404


def test_heartbeat_and_recovery_of_an_unhealthy_agent(client, db):
    agent = register(client)
    beat = client.post(f"{BASE}/{agent['id']}/heartbeat")
    assert beat.status_code == 200 and beat.json["last_heartbeat_at"]
    for _ in range(performance.DEFAULT_FAILURE_THRESHOLD):
        performance.note_outcome(db, agent["id"], False)
    db.commit()
    sick = client.post(f"{BASE}/{agent['id']}/heartbeat").json
    assert (sick["status"], sick["health_reason"]) == ("unhealthy", "5 consecutive failures")
    assert client.get(f"{BASE}?status=unhealthy").json[0]["id"] == agent["id"]
    row = db.get(Agent, agent["id"])
    row.consecutive_failures = 0  # as a successful health check or task would
    db.commit()
    healed = client.post(f"{BASE}/{agent['id']}/heartbeat").json
    assert (healed["status"], healed["health_reason"]) == ("active", None)
    assert client.post(f"{BASE}/nope/heartbeat").status_code == 404


def test_maintenance_off_brings_an_unhealthy_agent_back(client, db):
    agent = register(client)
    for _ in range(performance.DEFAULT_FAILURE_THRESHOLD):
        performance.note_outcome(db, agent["id"], False)
    db.commit()
    off = client.post(f"{BASE}/{agent['id']}/maintenance", json={"on": False}).json
    assert (off["status"], off["consecutive_failures"], off["health_reason"]) == ("active", 0, None)


def test_get_shows_performance(client, db):
    agent = register(client, capacity=2)
    row = db.get(Agent, agent["id"])
    row.tasks_completed, row.tasks_failed, row.total_duration_seconds = 9, 1, 30.0
    row.total_tokens, row.total_cost = 5000, 1.25
    db.add(SessionTask(session=Session(title="s"), key="t", title="t",
                       status=TaskStatus.IN_PROGRESS, assigned_agent_id=agent["id"]))  # fmt: skip
    db.commit()
    perf = client.get(f"{BASE}/{agent['id']}").json["performance"]
    assert perf["success_rate"] == 0.9 and perf["mean_duration_seconds"] == 3.0
    assert (perf["tier"], perf["total_tokens"], perf["total_cost"]) == ("advanced", 5000, 1.25)
    assert (perf["current_load"], perf["capacity"], perf["load_level"]) == (1, 2, "optimal")
    listed = client.get(BASE).json[0]["performance"]
    assert listed["load_ratio"] == 0.5
    fresh = register(client, name="fresh")["performance"]
    assert (fresh["success_rate"], fresh["tier"], fresh["load_level"]) == (None, "trainee", "idle")


def test_list_filters_combine(client, db):
    register(client)
    register(client, name="arch", type="architect", capabilities=["system_design"])
    names = lambda q: [a["name"] for a in client.get(f"{BASE}?{q}").json]  # noqa: E731
    assert names("status=active&type=architect") == ["arch"]
    assert names("maintenance=false") == ["arch", "coder"]
    assert client.get(f"{BASE}?maintenance=maybe").status_code == 422


def test_route_dry_run_shape(client, db):
    register(client, name="builder")
    register(client, name="planner", type="architect", driver="opencode",
             endpoint="http://127.0.0.1:4096",
             capabilities=["code_generation", "system_design"])  # fmt: skip
    body = {"required_capabilities": ["code_generation"], "technologies": ["python"],
            "complexity": "expert", "prefer_driver": "opencode"}  # fmt: skip
    response = client.post(f"{BASE}/route", json=body)
    assert response.status_code == 200
    decision = response.json
    assert decision["chosen"]["name"] == "planner"
    assert [c["agent"]["name"] for c in decision["candidates"]] == ["planner", "builder"]
    first = decision["candidates"][0]
    assert set(first["breakdown"]) == {"capability_fit", "success_rate", "load", "technology",
                                       "complexity_fit"}  # fmt: skip
    assert first["eligible"] and first["excluded_reason"] is None and 0 < first["score"] <= 1
    assert "chose planner" in decision["reason"] and decision["weights"]["load"] == 0.2
    opencode_only = {"required_capabilities": ["code_generation"], "require_driver": "opencode"}
    client.post(f"{BASE}/{decision['chosen']['id']}/maintenance", json={"on": True})
    assert client.post(f"{BASE}/route", json=opencode_only).json["chosen"] is None


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "required_capabilities"),
        ({"required_capabilities": ["flying"]}, "required_capabilities"),
        ({"required_capabilities": [], "complexity": "huge"}, "complexity"),
        ({"required_capabilities": [], "prefer_driver": "bash"}, "prefer_driver"),
        ({"required_capabilities": [], "technologies": [""]}, "technologies"),
    ],
)
def test_route_bad_input_is_422_naming_the_field(client, db, body, field):
    response = client.post(f"{BASE}/route", json=body)
    assert response.status_code == 422
    assert field in response.json["errors"]
