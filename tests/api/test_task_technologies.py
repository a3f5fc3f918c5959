"""A task's `technologies` in the session DAG: validated (count, length, content) with a 422
naming the field, stored on the task and shown in the session detail (both read paths)."""

import json

import pytest

from app.extensions import db as database
from app.schemas.limits import MAX_TASK_TECHNOLOGIES
from app.schemas.sessions import SessionSchema, dump_session_detail
from app.services import sessions as session_service

AGENT = {"name": "runner", "type": "implementer", "capabilities": ["code_generation"],
         "driver": "shell"}  # fmt: skip


def body(technologies, **task):
    task = {"key": "a", "command": "true", "technologies": technologies, **task}
    return {"title": "t", "prompt": "p", "dag": {"tasks": [task]}}


@pytest.mark.parametrize(
    "technologies, where, message",
    [
        (["x"] * (MAX_TASK_TECHNOLOGIES + 1), "technologies",
         f"At most {MAX_TASK_TECHNOLOGIES} technologies per task."),
        ([""], "technologies.0", "Use 1-100 characters"),
        (["   "], "technologies.0", "not all blank"),
        (["a" * 101], "technologies.0", "Use 1-100 characters"),
        (["ok", "tab\there"], "technologies.1", "no control characters"),
        ([7], "technologies.0", "Not a valid string."),
        ("python", "technologies", "Not a valid list."),
    ],
)  # fmt: skip
def test_bad_technologies_are_422_naming_the_field(client, db, technologies, where, message):
    response = client.post("/api/v1/sessions", json=body(technologies))
    assert response.status_code == 422, response.json
    errors = response.json["errors"]["dag"]["tasks"]["0"]
    for part in where.split("."):
        errors = errors[part]
    assert any(message in text for text in errors), errors


def test_technologies_are_stored_and_shown_by_both_read_paths(client, db):
    client.post("/api/v1/agents", json=AGENT)
    created = client.post("/api/v1/sessions", json=body(["Python", "PostgreSQL 16"]))
    assert created.status_code == 201, created.json
    session_id = created.json["id"]
    shown = client.get(f"/api/v1/sessions/{session_id}").json["tasks"][0]
    assert shown["technologies"] == ["Python", "PostgreSQL 16"]
    detail = dump_session_detail(*session_service.session_detail(database.reader, session_id))
    db.expire_all()
    orm = json.loads(json.dumps(SessionSchema().dump(session_service.get_session(db, session_id))))
    assert detail == orm and detail["tasks"][0]["technologies"] == shown["technologies"]
    without = client.post("/api/v1/sessions", json=body(None)).json
    assert without["errors"]  # null is not a list
    default = client.post("/api/v1/sessions", json={**body([]), "title": "u"})
    assert client.get(f"/api/v1/sessions/{default.json['id']}").json["tasks"][0][
        "technologies"] == []  # fmt: skip
