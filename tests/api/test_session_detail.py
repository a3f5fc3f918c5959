"""The session detail read path (GET /sessions/{id}): one prepared statement and a direct dump
that must answer exactly what SessionSchema documents, a conditional GET, and a read that
survives lost connections and lost prepared statements."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text, update

from app.extensions import Database
from app.extensions import db as database
from app.schemas.sessions import SessionSchema, TaskSchema, dump_session_detail
from app.services import sessions as session_service
from models import Session, SessionTask
from models.enums import SessionStatus, TaskStatus

AGENT = {"name": "runner", "type": "implementer", "capabilities": ["code_generation"],
         "driver": "shell"}  # fmt: skip
DAG = {
    "tasks": [
        {"key": "design", "command": "true", "description": "Sketch ✓ «it»"},
        {"key": "api", "command": "make api", "depends_on": ["design"], "optional": True},
        {"key": "ui", "depends_on": [{"key": "design", "type": "start_to_start"}],
         "command": "true", "required_capabilities": ["code_generation"]},
        {"key": "test", "command": "true", "max_attempts": 5,
         "depends_on": ["api", {"key": "ui", "type": "finish_to_finish", "required": False}]},
    ]
}  # fmt: skip


@pytest.fixture
def agent(client, db):
    return client.post("/api/v1/agents", json=AGENT).json


def submit(client, **fields) -> str:
    body = {"title": "Detail", "prompt": "Add OAuth login", "dag": DAG, **fields}
    response = client.post("/api/v1/sessions", json=body)
    assert response.status_code == 201, response.json
    return response.json["id"]


def schema_dump(db, session_id: str) -> dict:
    """What the ORM path and marshmallow answer, as JSON would carry it."""
    db.expire_all()
    dumped = SessionSchema().dump(session_service.get_session(db, session_id))
    return json.loads(json.dumps(dumped))


def fill_in_a_run(db, session_id: str, agent_id: str) -> None:
    """Give the rows every kind of value the response shows: results, errors, times, numbers."""
    when = datetime(2026, 11, 24, 8, 0, 0, tzinfo=UTC)  # no microseconds: isoformat drops them
    db.execute(update(Session).where(Session.id == session_id).values(
        status=SessionStatus.RUNNING, started_at=when, error="half done",
        metrics={"tokens": 12, "ratio": 0.25}, plan_info={"planner": "heuristic"},
    ))  # fmt: skip
    db.execute(update(SessionTask).where(SessionTask.session_id == session_id,
                                         SessionTask.key == "design").values(
        status=TaskStatus.COMPLETED, attempt=1, executions=1, worker="host:42",
        assigned_agent_id=agent_id, fence_token=2**40, branch="orch/x/design",
        result={"exit_code": 0, "output": "ok\n", "nested": {"list": [1, 2.5, None, "é"]}},
        tokens={"input": 10, "output": 3}, cost=0.125, queued_at=when,
        started_at=when + timedelta(microseconds=123456), finished_at=when + timedelta(seconds=1),
        heartbeat_at=when + timedelta(microseconds=500000),
    ))  # fmt: skip
    db.execute(update(SessionTask).where(SessionTask.session_id == session_id,
                                         SessionTask.key == "api").values(
        status=TaskStatus.FAILED, error="exit 2", cost=1e-7, attempt=3, executions=3,
    ))  # fmt: skip
    db.commit()


def test_the_detail_answers_what_the_schema_documents(client, agent, db):
    parent = submit(client)
    child = submit(client, parent_id=parent, tags=["oauth", "ü"], priority="critical",
                   metadata={"ticket": "X-1", "n": [1, {"a": None}]},
                   agent_preferences={"prefer": ["runner"]}, created_by="ana")  # fmt: skip
    fill_in_a_run(db, child, agent["id"])
    for session_id in (parent, child):
        expected = schema_dump(db, session_id)
        detail = dump_session_detail(*session_service.session_detail(database.reader, session_id))
        assert detail == expected
        assert set(detail) == set(SessionSchema().fields)
        assert all(set(task) == set(TaskSchema().fields) for task in detail["tasks"])
        response = client.get(f"/api/v1/sessions/{session_id}")
        assert response.status_code == 200
        assert response.json == expected
    tasks = {task["key"]: task for task in client.get(f"/api/v1/sessions/{child}").json["tasks"]}
    assert tasks["design"]["started_at"] == "2026-11-24T08:00:00.123456+00:00"
    assert tasks["design"]["queued_at"] == "2026-11-24T08:00:00+00:00"
    assert tasks["test"]["depends_on"] == [
        {"key": "api", "type": "finish_to_start", "required": True},
        {"key": "ui", "type": "finish_to_finish", "required": False},
    ]


def test_an_unknown_session_is_404_in_the_usual_format(client, db):
    response = client.get("/api/v1/sessions/no-such-session")
    assert response.status_code == 404
    assert response.json["code"] == 404 and "no-such-session" in response.json["message"]


def test_conditional_get_answers_304_until_the_session_changes(client, agent, db):
    session_id = submit(client)
    first = client.get(f"/api/v1/sessions/{session_id}")
    etag = first.headers["ETag"]
    again = client.get(f"/api/v1/sessions/{session_id}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b"" and again.headers["ETag"] == etag
    for other_forms in (f"W/{etag}", f'"nope", {etag}', "*"):
        headers = {"If-None-Match": other_forms}
        assert client.get(f"/api/v1/sessions/{session_id}", headers=headers).status_code == 304
    assert client.get(f"/api/v1/sessions/{session_id}",
                      headers={"If-None-Match": '"nope"'}).status_code == 200  # fmt: skip
    db.execute(
        update(SessionTask)
        .where(SessionTask.session_id == session_id, SessionTask.key == "api")
        .values(status="ready")
    )
    db.commit()
    changed = client.get(f"/api/v1/sessions/{session_id}", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert changed.json["progress"]["by_status"] == {"pending": 3, "ready": 1}


@pytest.fixture
def own_pool(database_url):
    """A Database of the test's own, its connections named so that they can be terminated."""
    own = Database()
    own.init(f"{database_url}?application_name=orch-detail-test")
    yield own
    own.dispose()


def terminate_own_connections(db) -> int:
    return db.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                           "WHERE application_name = 'orch-detail-test'")).scalar()  # fmt: skip


def test_the_detail_survives_a_lost_prepared_statement(client, agent, db, own_pool):
    session_id = submit(client)
    expected = session_service.session_detail(own_pool.reader, session_id)
    with own_pool.reader.connect() as connection:  # the pool's only connection
        assert session_service.DETAIL_STATEMENT in connection.connection.info
        connection.exec_driver_sql("DEALLOCATE ALL")
        connection.commit()
    assert session_service.session_detail(own_pool.reader, session_id) == expected


def test_the_detail_survives_its_connection_being_killed(client, agent, db, own_pool,
                                                         monkeypatch):  # fmt: skip
    session_id = submit(client)
    expected = session_service.session_detail(own_pool.reader, session_id)
    assert terminate_own_connections(db) == 1
    # Within the idle window (no ping at checkout): the read finds the broken connection, drops
    # the pool and reads again on a new one.
    monkeypatch.setattr("app.extensions.PING_AFTER_IDLE_SECONDS", 60.0)
    assert session_service.session_detail(own_pool.reader, session_id) == expected


def test_a_connection_idle_past_the_window_is_pinged_and_replaced(db, own_pool, monkeypatch):
    with own_pool.engine.connect() as connection:
        connection.exec_driver_sql("SELECT 1")
    assert terminate_own_connections(db) == 1
    monkeypatch.setattr("app.extensions.PING_AFTER_IDLE_SECONDS", 0.0)
    with own_pool.engine.connect() as connection:  # without the ping this statement would fail
        assert connection.exec_driver_sql("SELECT 1").scalar() == 1
