"""Submitting, reading and listing sessions over HTTP, and every kind of bad input."""

import pytest
from sqlalchemy import func, select

from models import Session, SessionTask, TaskDependency

AGENT = {
    "name": "runner",
    "type": "implementer",
    "capabilities": ["code_generation", "test_generation"],
    "driver": "shell",
}


def diamond():
    return {
        "tasks": [
            {"key": "design", "command": "true", "required_capabilities": ["code_generation"]},
            {"key": "api", "command": "true", "depends_on": ["design"]},
            {"key": "ui", "command": "true", "depends_on": ["design"]},
            {
                "key": "test",
                "command": "true",
                "depends_on": ["api", {"key": "ui", "type": "finish_to_start", "required": False}],
                "required_capabilities": ["test_generation"],
            },
        ]
    }


@pytest.fixture
def agent(client, db):
    return client.post("/api/v1/agents", json=AGENT).json


def submit(client, dag=None, **fields):
    body = {"title": "Add OAuth", "prompt": "Add OAuth login", "dag": dag or diamond(), **fields}
    return client.post("/api/v1/sessions", json=body)


def count(db, model):
    return db.scalar(select(func.count()).select_from(model))


def test_submit_returns_the_queued_session_with_its_tasks(client, agent):
    response = submit(client, priority="high", tags=["oauth"], metadata={"ticket": "X-1"})
    assert response.status_code == 201
    body = response.json
    assert body["status"] == "queued"
    assert body["priority"] == "high"
    assert body["type"] == "execution"
    assert body["max_duration_seconds"] == 3600
    assert body["metadata"] == {"ticket": "X-1"}
    assert [task["key"] for task in body["tasks"]] == ["design", "api", "ui", "test"]
    assert all(task["status"] == "pending" for task in body["tasks"])
    test_task = body["tasks"][3]
    assert {"key": "ui", "type": "finish_to_start", "required": False} in test_task["depends_on"]
    assert body["progress"] == {"total": 4, "by_status": {"pending": 4}}


def test_get_one_session(client, agent):
    created = submit(client).json
    fetched = client.get(f"/api/v1/sessions/{created['id']}")
    assert fetched.status_code == 200
    assert fetched.json["id"] == created["id"]
    assert len(fetched.json["tasks"]) == 4


def test_list_is_paginated_and_filtered_by_status(client, agent, db):
    ids = [submit(client, title=f"s{i}").json["id"] for i in range(5)]
    db.get(Session, ids[0]).status = "failed"
    db.commit()
    page = client.get("/api/v1/sessions?page=1&page_size=2").json
    assert page["total"] == 5
    assert len(page["items"]) == 2
    assert page["items"][0]["title"] == "s4"
    last = client.get("/api/v1/sessions?page=3&page_size=2").json
    assert [item["title"] for item in last["items"]] == ["s0"]
    failed = client.get("/api/v1/sessions?status=failed").json
    assert [item["id"] for item in failed["items"]] == [ids[0]]
    assert client.get("/api/v1/sessions?status=exploded").status_code == 422
    assert client.get("/api/v1/sessions?page=0").status_code == 422


def test_unknown_session_is_404(client, db):
    response = client.get("/api/v1/sessions/nope")
    assert response.status_code == 404
    assert "nope" in response.json["message"]


def assert_rejected(response, field, text, db):
    assert response.status_code == 422, response.json
    assert field in response.json["errors"], response.json
    assert text in str(response.json["errors"][field])
    assert count(db, Session) == 0
    assert count(db, SessionTask) == 0
    assert count(db, TaskDependency) == 0


def test_cyclic_dag_is_422_naming_the_cycle(client, agent, db):
    dag = {"tasks": [{"key": "a", "depends_on": ["b"]}, {"key": "b", "depends_on": ["a"]}]}
    assert_rejected(submit(client, dag), "dag.tasks", "a -> b -> a", db)


def test_unknown_dependency_is_422(client, agent, db):
    dag = {"tasks": [{"key": "a"}, {"key": "b", "depends_on": ["ghost"]}]}
    assert_rejected(submit(client, dag), "dag.tasks.1.depends_on.0", "ghost", db)


def test_duplicate_key_is_422(client, agent, db):
    dag = {"tasks": [{"key": "a"}, {"key": "a"}]}
    assert_rejected(submit(client, dag), "dag.tasks.1.key", "Duplicate", db)


def test_capability_no_agent_has_is_422_saying_which(client, agent, db):
    dag = {"tasks": [{"key": "a", "required_capabilities": ["security_audit"]}]}
    assert_rejected(submit(client, dag), "dag.tasks.required_capabilities", "security_audit", db)


def test_agent_in_maintenance_does_not_count(client, db):
    client.post("/api/v1/agents", json={**AGENT, "maintenance": True})
    assert_rejected(submit(client), "dag.tasks.required_capabilities", "code_generation", db)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"prompt": "p", "dag": {"tasks": [{"key": "a"}]}}, "title"),
        ({"title": "t", "dag": {"tasks": [{"key": "a"}]}}, "prompt"),
        ({"title": "t", "prompt": "p"}, "dag"),
        ({"title": "t", "prompt": "p", "dag": {"tasks": []}}, "dag"),
        ({"title": 5, "prompt": "p", "dag": {"tasks": [{"key": "a"}]}}, "title"),
        (
            {"title": "t", "prompt": "p", "priority": "urgent", "dag": {"tasks": [{"key": "a"}]}},
            "priority",
        ),
        (
            {
                "title": "t",
                "prompt": "p",
                "max_duration_seconds": 10,
                "dag": {"tasks": [{"key": "a"}]},
            },
            "max_duration_seconds",
        ),
        ({"title": "t", "prompt": "p", "type": "party", "dag": {"tasks": [{"key": "a"}]}}, "type"),
        ({"title": "t", "prompt": "p", "dag": {"tasks": [{"key": "a", "depends_on": [7]}]}}, "dag"),
        ({"title": "t", "prompt": "p", "dag": {"tasks": [{"key": "a b"}]}}, "dag"),
        ({"title": "t", "prompt": "p", "dag": {"tasks": [{"title": "no key"}]}}, "dag"),
        ({"title": "t", "prompt": "p", "dag": {"tasks": "all of them"}}, "dag"),
    ],
)
def test_malformed_body_is_422_naming_the_field(client, agent, db, body, field):
    assert_rejected(client.post("/api/v1/sessions", json=body), field, "", db)


def test_non_json_body_is_a_4xx(client, agent, db):
    response = client.post("/api/v1/sessions", data="not json", content_type="application/json")
    assert 400 <= response.status_code < 500
    assert count(db, Session) == 0


def test_unknown_parent_is_422(client, agent, db):
    assert_rejected(submit(client, parent_id="nope"), "parent_id", "nope", db)


def test_idempotency_key_returns_the_same_session(client, agent, db):
    headers = {"Idempotency-Key": "req-1"}
    body = {"title": "t", "prompt": "p", "dag": diamond()}
    first = client.post("/api/v1/sessions", json=body, headers=headers)
    again = client.post("/api/v1/sessions", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json["id"] == again.json["id"]
    assert count(db, Session) == 1
    other = client.post("/api/v1/sessions", json={**body, "title": "other"}, headers=headers)
    assert other.status_code == 422
    assert "Idempotency-Key" in other.json["errors"]
