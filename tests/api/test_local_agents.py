"""An opencode agent may name `local` as its endpoint: the server beside its task's worker."""

from __future__ import annotations

AGENT = {"name": "oc-local", "type": "implementer", "capabilities": ["code_generation"],
         "driver": "opencode", "model": "fake/scripted"}  # fmt: skip


def test_an_agent_served_by_its_workers_server_registers_and_moves_back(client, db):
    created = client.post("/api/v1/agents", json={**AGENT, "endpoint": "local"})
    assert created.status_code == 201, created.json
    assert created.json["endpoint"] == "local"
    agent_id = created.json["id"]
    moved = client.patch(f"/api/v1/agents/{agent_id}", json={"endpoint": "http://127.0.0.1:4096"})
    assert moved.status_code == 200 and moved.json["endpoint"] == "http://127.0.0.1:4096"
    back = client.patch(f"/api/v1/agents/{agent_id}", json={"endpoint": "local"})
    assert back.status_code == 200 and back.json["endpoint"] == "local"


def test_other_words_are_not_endpoints(client, db):
    for endpoint in ("locale", "LOCAL", "local:4096"):
        response = client.post("/api/v1/agents", json={**AGENT, "endpoint": endpoint})
        assert response.status_code == 422, (endpoint, response.json)
        assert "endpoint" in response.json["errors"]
