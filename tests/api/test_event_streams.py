"""Event streams (SSE): resume ids are plain integers, a token holds a bounded number of
streams, a stream ends after its lifetime with the id to resume from, and a reconnection to a
finished session with nothing left is told to stop (204)."""

import json

import pytest
from sqlalchemy import select

from app.api.event_stream import frame
from app.schemas.history import EventSchema
from app.services.events import record_event
from models import SessionEvent
from tests.conftest import ADMIN_TOKEN_ID

SSE = {"Accept": "text/event-stream"}
AGENT = {"name": "runner", "type": "implementer", "driver": "shell",
         "capabilities": ["code_generation"]}  # fmt: skip
# Not plain ASCII integers within bigint: each is a 422, never a 500 (`²`.isdigit() is True).
NOT_PLAIN = ["²", "1e3", " 1", "1 ", "-1", "+1", "1.0", "0x1F", "", "9" * 30, str(2**63)]
NOT_PLAIN_HEADERS = [value for value in NOT_PLAIN if value.strip()]  # empty: no header at all


@pytest.fixture
def session_id(client, db):
    """A queued session (no worker runs it, so its streams stay open)."""
    client.post("/api/v1/agents", json=AGENT)
    body = {"title": "t", "prompt": "p", "dag": {"tasks": [{"key": "a", "command": "true"}]}}
    return client.post("/api/v1/sessions", json=body).json["id"]


@pytest.fixture
def slots(redis_client):
    """Stream slots start empty (they live in the test Redis database)."""
    return redis_client


def frames_of(body: str) -> list[dict]:
    """The SSE frames of a stream's body as dicts of their fields (comments dropped)."""
    frames = []
    for text in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in text.split("\n") if line[:1] not in ("", ":"))
        if fields:
            frames.append(fields)
    return frames


@pytest.mark.parametrize("value", NOT_PLAIN_HEADERS)
def test_a_last_event_id_that_is_not_a_plain_integer_is_422(client, session_id, value):
    url = f"/api/v1/sessions/{session_id}/events"
    response = client.get(url, headers={**SSE, "Last-Event-ID": value})
    assert response.status_code == 422, response.data
    assert "Last-Event-ID" in response.json["message"]
    assert "ASCII digits" in response.json["errors"]["Last-Event-ID"][0]


@pytest.mark.parametrize("value", NOT_PLAIN)
@pytest.mark.parametrize("accept", [SSE, {}], ids=["stream", "page"])
def test_an_after_that_is_not_a_plain_integer_is_422(client, session_id, value, accept):
    url = f"/api/v1/sessions/{session_id}/events"
    response = client.get(url, query_string={"after": value}, headers=accept)
    assert response.status_code == 422, response.data
    assert "ASCII digits" in json.dumps(response.json["errors"]["after"])


def test_plain_integers_up_to_bigint_are_accepted(client, session_id):
    url = f"/api/v1/sessions/{session_id}/events"
    for value in ("0", "007", str(2**63 - 1)):
        assert client.get(url, query_string={"after": value}).status_code == 200


def test_a_token_holds_at_most_streams_per_token_streams(app, client, session_id, slots,
                                                         monkeypatch):  # fmt: skip
    monkeypatch.setitem(app.config, "STREAMS_PER_TOKEN", 2)
    url = f"/api/v1/sessions/{session_id}/events"
    first = client.get(url, headers=SSE, buffered=False)
    second = client.get(url, headers=SSE, buffered=False)
    assert first.status_code == second.status_code == 200
    refused = client.get(url, headers=SSE, buffered=False)
    assert refused.status_code == 429
    assert "STREAMS_PER_TOKEN" in refused.json["message"]
    assert client.get(url).status_code == 200  # pages are not streams
    # A closed stream gives its slot back. (Closed last-opened first: in one thread the test
    # client stacks the streams' request contexts; a server runs each on its own.)
    second.close()
    third = client.get(url, headers=SSE, buffered=False)
    assert third.status_code == 200
    third.close()
    first.close()


def test_a_stream_ends_after_its_lifetime_and_resumes_from_the_id_it_named(
    app, client, db, session_id, slots, monkeypatch
):
    monkeypatch.setitem(app.config, "STREAM_MAX_SECONDS", 0.2)
    url = f"/api/v1/sessions/{session_id}/events"
    with client.get(url, headers=SSE) as streamed:  # closed at the end, as a server does
        frames = frames_of(streamed.get_data(as_text=True))
    assert [f["event"] for f in frames if "event" in f] == ["session.created", "session.queued"]
    assert frames[-1] == {"id": "2"}  # the lifetime is over: resume after event 2
    record_event(db, session_id, "test.later", n=3)
    db.commit()
    with client.get(url, headers={**SSE, "Last-Event-ID": frames[-1]["id"]}) as resumed:
        frames = frames_of(resumed.get_data(as_text=True))
    assert [(f["id"], f.get("event")) for f in frames if "id" in f] == [
        ("3", "test.later"), ("3", None)
    ]  # fmt: skip
    assert slots.zcard(f"orchestrator:streams:{ADMIN_TOKEN_ID}") == 0  # both slots given back


def test_a_reconnection_to_a_finished_session_with_nothing_left_is_told_to_stop(client, session_id):
    client.post(f"/api/v1/sessions/{session_id}/cancel")
    url = f"/api/v1/sessions/{session_id}/events"
    last = client.get(url).json["next_after"]
    assert client.get(url, headers={**SSE, "Last-Event-ID": str(last)}).status_code == 204
    with client.get(url, headers={**SSE, "Last-Event-ID": str(last - 1)}) as rest:
        assert rest.status_code == 200
        frames = frames_of(rest.get_data(as_text=True))
    assert [(f["id"], f["event"]) for f in frames if "id" in f] == [(str(last), "session.cancel")]


def test_a_streamed_event_is_the_event_of_the_json_pages(db, session_id):
    record_event(db, session_id, "test.data", task_id="t-1", agent_id="a-1",
                 nested={"list": [1, "two"]}, text="ünïcode")  # fmt: skip
    db.commit()
    event = db.scalars(select(SessionEvent).where(SessionEvent.type == "test.data")).one()
    row = db.execute(select(*SessionEvent.__table__.c).where(SessionEvent.id == event.id)).one()
    lines = frame(row).split("\n")
    assert lines[:2] == [f"id: {event.seq}", "event: test.data"]
    assert json.loads(lines[2].removeprefix("data: ")) == EventSchema().dump(event)
