"""Registering and listing agents over HTTP."""

import pytest

SHELL_AGENT = {
    "name": "runner-1",
    "type": "implementer",
    "capabilities": ["code_generation", "test_generation"],
    "driver": "shell",
}


def test_register_and_list(client, db):
    created = client.post("/api/v1/agents", json={**SHELL_AGENT, "capacity": 3})
    assert created.status_code == 201
    assert created.json["capacity"] == 3
    assert created.json["status"] == "active"
    listed = client.get("/api/v1/agents").json
    assert [agent["name"] for agent in listed] == ["runner-1"]
    assert client.get(f"/api/v1/agents/{created.json['id']}").json["name"] == "runner-1"


def test_list_filters_by_capability_and_type(client, db):
    client.post("/api/v1/agents", json=SHELL_AGENT)
    client.post(
        "/api/v1/agents",
        json={**SHELL_AGENT, "name": "rev", "type": "reviewer", "capabilities": ["code_review"]},
    )
    names = lambda query: [a["name"] for a in client.get(f"/api/v1/agents?{query}").json]  # noqa: E731
    assert names("capability=code_review") == ["rev"]
    assert names("type=implementer") == ["runner-1"]
    assert client.get("/api/v1/agents?capability=flying").status_code == 422


def test_config_secrets_are_never_returned(client, db):
    body = {**SHELL_AGENT, "config": {"password": "hunter2"}}
    response = client.post("/api/v1/agents", json=body)
    assert "hunter2" not in response.get_data(as_text=True)
    assert "hunter2" not in client.get("/api/v1/agents").get_data(as_text=True)


def test_duplicate_name_is_a_conflict(client, db):
    client.post("/api/v1/agents", json=SHELL_AGENT)
    response = client.post("/api/v1/agents", json=SHELL_AGENT)
    assert response.status_code == 409
    assert "runner-1" in response.json["message"]


@pytest.mark.parametrize(
    "change, field",
    [
        ({"type": "wizard"}, "type"),
        ({"capabilities": ["flying"]}, "capabilities"),
        ({"capabilities": []}, "capabilities"),
        ({"driver": "opencode"}, "endpoint"),
        ({"capacity": 0}, "capacity"),
        ({"capacity": "many"}, "capacity"),
        ({"name": "bad name!"}, "name"),
    ],
)
def test_bad_agent_gets_422_naming_the_field(client, db, change, field):
    response = client.post("/api/v1/agents", json={**SHELL_AGENT, **change})
    assert response.status_code == 422
    assert field in response.json["errors"]


def test_missing_field_is_named(client, db):
    response = client.post("/api/v1/agents", json={"name": "x"})
    assert response.status_code == 422
    assert {"type", "capabilities", "driver"} <= set(response.json["errors"])


def test_unknown_agent_is_404(client, db):
    response = client.get("/api/v1/agents/does-not-exist")
    assert response.status_code == 404
    assert response.json["code"] == 404
