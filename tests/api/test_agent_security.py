"""An agent's endpoint and config are admin business: a write token cannot redirect an agent's
credentials, a new endpoint drops them, and only servers AGENT_ENDPOINT_ALLOW allows are named."""

from __future__ import annotations

import uuid

import pytest

from app.config import ConfigError, load_config
from models import Agent
from tests.conftest import ensure_token

BASE = "/api/v1/agents"
OPENCODE = {"name": "oc", "type": "implementer", "driver": "opencode",
            "endpoint": "http://127.0.0.1:4096", "capabilities": ["code_generation"],
            "config": {"username": "opencode", "password": "hunter2-secret",
                       "env": {"GREETING": "hi"}}}  # fmt: skip


@pytest.fixture
def as_scope(app, db):
    """A function that makes a request with a fresh token of the given scope."""
    from app.services.tokens import new_secret

    secrets = {}
    for scope in ("read", "write", "admin"):
        secrets[scope] = new_secret()
        ensure_token(app, str(uuid.uuid4()), secrets[scope], [scope])
    plain = app.test_client()

    def call(scope, method, url, body=None):
        headers = {"Authorization": f"Bearer {secrets[scope]}"}
        return plain.open(url, method=method, headers=headers, json=body)

    return call


def stored(db, agent_id) -> Agent:
    db.expire_all()
    return db.get(Agent, agent_id)


def test_endpoint_and_config_changes_need_the_admin_scope(as_scope, db):
    refused = as_scope("write", "POST", BASE, OPENCODE)
    assert refused.status_code == 403 and "config" in refused.json["message"]
    bare = {key: value for key, value in OPENCODE.items() if key != "config"}
    assert as_scope("write", "POST", BASE, {**bare, "name": "plain"}).status_code == 201
    created = as_scope("admin", "POST", BASE, OPENCODE)
    assert created.status_code == 201, created.json
    url = f"{BASE}/{created.json['id']}"
    for body in ({"endpoint": "http://127.0.0.1:5000"}, {"config": {"password": "mine"}},
                 {"endpoint": "http://127.0.0.1:5000", "capacity": 2}):  # fmt: skip
        refused = as_scope("write", "PATCH", url, body)
        assert refused.status_code == 403, (body, refused.json)
        assert "admin" in refused.json["message"]
        assert as_scope("read", "PATCH", url, body).status_code == 403
    agent = stored(db, created.json["id"])
    assert (agent.endpoint, agent.capacity) == ("http://127.0.0.1:4096", 1)
    assert agent.config == OPENCODE["config"]
    assert as_scope("write", "PATCH", url, {"capacity": 3, "model": "m"}).status_code == 200
    changed = as_scope("admin", "PATCH", url, {"endpoint": "http://127.0.0.1:5000"})
    assert changed.status_code == 200 and changed.json["endpoint"] == "http://127.0.0.1:5000"


def test_a_new_endpoint_drops_the_stored_credentials(client, db):
    agent_id = client.post(BASE, json=OPENCODE).json["id"]
    url = f"{BASE}/{agent_id}"
    same = client.patch(url, json={"endpoint": "HTTP://127.0.0.1:4096/"})
    assert same.status_code == 200
    assert stored(db, agent_id).config == OPENCODE["config"]  # the same server keeps them
    moved = client.patch(url, json={"endpoint": "http://127.0.0.1:4097"})
    assert moved.status_code == 200, moved.json
    assert stored(db, agent_id).config == {"env": {"GREETING": "hi"}}
    with_new = {"endpoint": "http://127.0.0.1:4098", "config": {"password": "new-one"}}
    assert client.patch(url, json=with_new).status_code == 200
    assert stored(db, agent_id).config == {"password": "new-one"}
    assert "new-one" not in client.get(url).get_data(as_text=True)


@pytest.mark.parametrize("endpoint", [
    "http://169.254.169.254/latest/meta-data",  # a cloud metadata service
    "http://db.internal:5432",
    "http://127.0.0.1.evil.example:4096",
    "http://2130706433:4096",  # 127.0.0.1 in another spelling: hosts are compared as written
    "http://user:pw@127.0.0.1:4096",  # credentials in the URL
])  # fmt: skip
def test_endpoints_outside_the_allow_list_are_a_422_on_register_and_on_change(client, db, endpoint):
    response = client.post(BASE, json={**OPENCODE, "endpoint": endpoint})
    assert response.status_code == 422, response.json
    assert "endpoint" in response.json["errors"], response.json
    agent_id = client.post(BASE, json=OPENCODE).json["id"]
    changed = client.patch(f"{BASE}/{agent_id}", json={"endpoint": endpoint})
    assert changed.status_code == 422 and "endpoint" in changed.json["errors"]
    agent = stored(db, agent_id)
    assert agent.endpoint == OPENCODE["endpoint"] and agent.config == OPENCODE["config"]


def test_the_allow_list_is_configurable(app, client, db, monkeypatch):
    monkeypatch.setitem(
        app.config, "AGENT_ENDPOINT_ALLOW", "oc.internal:4096, https://oc.example/v1"
    )
    for endpoint, status in [
        ("http://oc.internal:4096", 201),
        ("https://oc.example/v1/x", 201),
        ("http://oc.internal:4097", 422),
        ("http://oc.example/v1", 422),
        ("https://oc.example/v10", 422),
        ("http://127.0.0.1:4096", 422),
    ]:
        body = {**OPENCODE, "name": f"oc-{uuid.uuid4().hex[:6]}", "endpoint": endpoint}
        response = client.post(BASE, json=body)
        assert response.status_code == status, (endpoint, response.json)
    with pytest.raises(ConfigError, match="AGENT_ENDPOINT_ALLOW"):
        load_config({"DATABASE_URL": "postgresql://x/y", "REDIS_URL": "redis://x",
                     "AGENT_ENDPOINT_ALLOW": "oc*.internal"})  # fmt: skip
