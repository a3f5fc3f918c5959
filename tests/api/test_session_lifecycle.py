"""Lifecycle actions over HTTP: every action from every status, checkpoints, tree, events."""

import itertools
import json

import pytest

from models import Session
from models.enums import SessionStatus
from tests.api.test_sessions import AGENT, diamond

S = SessionStatus
ALLOWED = {
    "start": {S.PENDING},
    "pause": {S.QUEUED, S.RUNNING, S.DEGRADED},
    "resume": {S.PAUSED, S.ORPHANED},
    "cancel": {S.PENDING, S.QUEUED, S.RUNNING, S.DEGRADED, S.PAUSED, S.ORPHANED},
    "stop": {S.QUEUED, S.RUNNING, S.DEGRADED, S.PAUSED},
    "retry": {S.FAILED, S.TIMEOUT, S.STOPPED},
}
EXPECTED_STATUS = {"start": "queued", "pause": "paused", "resume": "queued",
                   "cancel": "cancelled", "stop": "stopped", "retry": "queued"}  # fmt: skip


@pytest.fixture
def session_id(client, db):
    client.post("/api/v1/agents", json=AGENT)
    body = {"title": "t", "prompt": "p", "dag": diamond()}
    return client.post("/api/v1/sessions", json=body).json["id"]


def force_status(db, session_id, status):
    db.get(Session, session_id).status = status
    db.commit()


@pytest.mark.parametrize("action, status", list(itertools.product(ALLOWED, SessionStatus)))
def test_every_action_from_every_status(client, db, session_id, action, status):
    force_status(db, session_id, status)
    response = client.post(f"/api/v1/sessions/{session_id}/{action}")
    if status in ALLOWED[action]:
        assert response.status_code == 200, response.json
        assert response.json["status"] == EXPECTED_STATUS[action]
    else:
        assert response.status_code == 409, response.json
        assert response.json["current"] == status.value
        assert action not in response.json["allowed"]
        db.expire_all()
        assert db.get(Session, session_id).status is status


def test_cancel_ends_every_unfinished_task(client, db, session_id):
    response = client.post(f"/api/v1/sessions/{session_id}/cancel")
    assert response.json["allowed_actions"] == []
    tasks = client.get(f"/api/v1/sessions/{session_id}").json["tasks"]
    assert {task["status"] for task in tasks} == {"cancelled"}


def test_unknown_session_action_is_404(client, db):
    assert client.post("/api/v1/sessions/nope/pause").status_code == 404


def test_tree_nests_children(client, db, session_id):
    child = client.post("/api/v1/sessions", json={
        "title": "child", "prompt": "p", "parent_id": session_id, "dag": diamond()})  # fmt: skip
    grandchild = client.post("/api/v1/sessions", json={"title": "grandchild", "prompt": "p",
                             "parent_id": child.json["id"], "dag": diamond()})  # fmt: skip
    tree = client.get(f"/api/v1/sessions/{session_id}/tree").json
    assert tree["id"] == session_id
    assert [c["title"] for c in tree["children"]] == ["child"]
    assert tree["children"][0]["children"][0]["id"] == grandchild.json["id"]


def test_events_page_and_stream_with_replay(client, db, session_id):
    client.post(f"/api/v1/sessions/{session_id}/cancel")
    page = client.get(f"/api/v1/sessions/{session_id}/events").json
    types = [event["type"] for event in page["items"]]
    assert types[:2] == ["session.created", "session.queued"]
    assert types[-1] == "session.cancel"
    assert [e["seq"] for e in page["items"]] == list(range(1, len(page["items"]) + 1))
    second = page["items"][1]["seq"]
    after = client.get(f"/api/v1/sessions/{session_id}/events?after={second}").json["items"]
    assert [e["id"] for e in after] == [e["id"] for e in page["items"][2:]]

    headers = {"Accept": "text/event-stream", "Last-Event-ID": str(second)}
    stream = client.get(f"/api/v1/sessions/{session_id}/events", headers=headers)
    assert stream.mimetype == "text/event-stream"
    frames = [f for f in stream.get_data(as_text=True).split("\n\n") if f.startswith("id:")]
    ids = [int(f.split("\n")[0].removeprefix("id: ")) for f in frames]
    assert ids == [e["seq"] for e in page["items"][2:]]
    last = json.loads(frames[-1].split("data: ", 1)[1])
    assert last["type"] == "session.cancel"


def test_bad_last_event_id_is_422(client, db, session_id):
    headers = {"Accept": "text/event-stream", "Last-Event-ID": "x"}
    response = client.get(f"/api/v1/sessions/{session_id}/events", headers=headers)
    assert response.status_code == 422


def test_checkpoints_of_unknown_session_is_404(client, db):
    assert client.get("/api/v1/sessions/nope/checkpoints").status_code == 404
    assert client.post("/api/v1/sessions/nope/checkpoints/1/restore").status_code == 404
