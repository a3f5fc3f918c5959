"""Context entries over HTTP: read, write with versions, history, diff, merge and resolve."""

import pytest

AGENT = {"name": "runner", "type": "implementer", "capabilities": ["code_generation"],
         "driver": "shell"}  # fmt: skip


@pytest.fixture
def session_id(client, db):
    client.post("/api/v1/agents", json=AGENT)
    body = {"title": "t", "prompt": "p", "dag": {"tasks": [{"key": "a", "command": "true"}]}}
    return client.post("/api/v1/sessions", json=body).json["id"]


def url(session_id, key="conventions", suffix=""):
    return f"/api/v1/contexts/session/{key}{suffix}?owner_id={session_id}"


def test_write_read_and_version_check(client, session_id):
    created = client.put(url(session_id), json={"value": {"style": "black"}, "source": "me"})
    assert created.status_code == 201, created.json
    assert created.json["version"] == 1 and created.json["owner_id"] == session_id
    fetched = client.get(url(session_id)).json
    assert fetched["value"] == {"style": "black"} and fetched["source"] == "me"
    updated = client.put(url(session_id), json={"value": {"style": "ruff"}, "expected_version": 1})
    assert updated.status_code == 200 and updated.json["version"] == 2
    stale = client.put(url(session_id), json={"value": {"style": "yapf"}, "expected_version": 1})
    assert stale.status_code == 409
    assert "expected_version" in stale.json["errors"]
    assert client.get(url(session_id)).json["value"] == {"style": "ruff"}


def test_history_and_diff(client, session_id):
    client.put(url(session_id), json={"value": {"style": "black", "line": 88}})
    client.put(url(session_id), json={"value": {"style": "black", "line": 100}})
    history = client.get(url(session_id, suffix="/history")).json["items"]
    assert [item["version"] for item in history] == [1, 2]
    assert history[0]["value"]["line"] == 88
    diff = client.get(url(session_id, suffix="/diff") + "&from=1&to=2")
    assert diff.status_code == 200
    assert diff.json == {
        "from": 1,
        "to": 2,
        "changes": [{"op": "changed", "path": "/line", "old": 88, "new": 100}],
    }
    assert client.get(url(session_id, suffix="/diff") + "&from=1&to=7").status_code == 404
    assert client.get(url(session_id, suffix="/diff") + "&from=1").status_code == 422


def test_list_filters_by_scope_owner_and_prefix(client, session_id):
    client.put(url(session_id, "tasks.a"), json={"value": {"summary": "done"}})
    client.put(url(session_id), json={"value": 1})
    client.put("/api/v1/contexts/global/defaults", json={"value": {"lang": "py"}})
    everything = client.get("/api/v1/contexts").json
    assert everything["total"] == 3
    mine = client.get(f"/api/v1/contexts?scope=session&owner_id={session_id}").json["items"]
    assert [item["key"] for item in mine] == ["conventions", "tasks.a"]
    tasks = client.get(f"/api/v1/contexts?owner_id={session_id}&prefix=tasks.").json["items"]
    assert [item["key"] for item in tasks] == ["tasks.a"]
    assert client.get("/api/v1/contexts?scope=planet").status_code == 422


def test_merge_and_resolve_a_conflict(client, session_id):
    client.put(url(session_id), json={"value": {"owner": "ana", "ci": {"python": "3.11"}}})
    body = {
        "target": {"scope": "session", "owner_id": session_id, "key": "conventions"},
        "value": {"owner": "bob", "ci": {"node": "20"}},
        "strategy": "manual",
        "origin": "task:ui",
    }
    merged = client.post("/api/v1/contexts/merge", json=body)
    assert merged.status_code == 200, merged.json
    assert merged.json["value"]["owner"] == "ana"
    assert merged.json["pending_merge"]["conflicts"] == [
        {"path": "/owner", "source": "bob", "target": "ana"}
    ]
    again = client.post("/api/v1/contexts/merge", json={**body, "strategy": "deep_merge"})
    assert again.status_code == 409
    resolved = client.post(
        url(session_id, suffix="/resolve"), json={"resolutions": {"/owner": "cy"}}
    )
    assert resolved.status_code == 200, resolved.json
    assert resolved.json["value"] == {"owner": "cy", "ci": {"python": "3.11", "node": "20"}}
    assert resolved.json["pending_merge"] is None and resolved.json["version"] == 3
    nothing = client.post(url(session_id, suffix="/resolve"), json={})
    assert nothing.status_code == 409


def test_merge_another_entry_in(client, session_id):
    client.put("/api/v1/contexts/global/defaults", json={"value": {"lang": "py", "tabs": False}})
    client.put(url(session_id), json={"value": {"tabs": True}})
    body = {
        "target": {"scope": "session", "owner_id": session_id, "key": "conventions"},
        "source": {"scope": "global", "key": "defaults"},
        "strategy": "prefer_target",
    }
    merged = client.post("/api/v1/contexts/merge", json=body).json
    assert merged["value"] == {"tabs": True, "lang": "py"}
    assert merged["source"] == "global:-:defaults"


@pytest.mark.parametrize(
    "method, path, body, status, field",
    [
        ("get", "/api/v1/contexts/global/nothing", None, 404, None),
        ("get", "/api/v1/contexts/planet/k", None, 422, "scope"),
        ("put", "/api/v1/contexts/session/k?owner_id=ghost", {"value": 1}, 422, "owner_id"),
        ("put", "/api/v1/contexts/global/k", {}, 422, "value"),
        ("put", "/api/v1/contexts/global/k", {"value": 1, "ttl_seconds": 5}, 422, "ttl_seconds"),
        ("put", "/api/v1/contexts/global/bad%20key", {"value": 1}, 422, "key"),
        ("put", "/api/v1/contexts/global/k", {"value": 1, "expected_version": 2}, 409, None),
        ("post", "/api/v1/contexts/merge",
         {"target": {"scope": "global", "key": "k"}, "strategy": "telepathy", "value": 1},
         422, "strategy"),
        ("post", "/api/v1/contexts/merge",
         {"target": {"scope": "global", "key": "k"}, "strategy": "deep_merge"}, 422, "source"),
        ("post", "/api/v1/contexts/merge",
         {"target": {"scope": "global", "key": "k"}, "strategy": "deep_merge",
          "source": {"scope": "global", "key": "absent"}}, 404, None),
    ],
)  # fmt: skip
def test_bad_requests_are_clear_4xx(client, db, method, path, body, status, field):
    response = getattr(client, method)(path, json=body) if body is not None else client.get(path)
    assert response.status_code == status, response.json
    if field:
        assert field in response.json["errors"], response.json


def test_temporary_entry_gets_an_expiry(client, db):
    response = client.put("/api/v1/contexts/temporary/scratch", json={"value": 1, "ttl_seconds": 5})
    assert response.status_code == 201
    assert response.json["expires_at"] is not None
