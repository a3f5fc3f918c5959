"""Readers of a session's event log never miss an event: numbers are handed out in commit
order, so an event that commits late can never sit behind a cursor that already passed it."""

import json
import threading

from sqlalchemy import select, text
from sqlalchemy.orm import Session as DbSession

from app.drivers.base import DriverResult
from app.engine import attempts
from app.engine.claim import claim
from app.engine.launch import launch
from app.engine.outcome import record_outcome
from app.extensions import db as database
from app.services import agents, sessions
from app.services.events import record_event
from models import Session, SessionEvent, SessionTask
from models.enums import SessionStatus
from tests.conftest import wait_until

OK = DriverResult(succeeded=True, summary="done")
WIDTH = 24


def wide_session(db, width: int = WIDTH) -> Session:
    """`width` independent tasks and a join after all of them, queued."""
    agents.register_agent(db, name="runner", type="implementer", driver="shell",
                          capabilities=["code_generation"], capacity=width)  # fmt: skip
    keys = [f"t{i}" for i in range(width)]
    specs = [{"key": key, "command": "true", "depends_on": []} for key in keys]
    specs.append({"key": "join", "command": "true", "depends_on": keys})
    for spec in specs:
        spec.update(description="", required_capabilities=[], optional=False,
                    timeout_seconds=60, max_attempts=2, estimate_hours=None)  # fmt: skip
    session, _ = sessions.create_session(db, {"title": "wide", "prompt": "p",
                                              "dag": {"tasks": specs}})  # fmt: skip
    sessions.start_session(db, session)
    db.commit()
    return session


def _waiting_for_a_lock() -> bool:
    query = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    # Outside any transaction: pg_stat_activity is read once per transaction.
    with database.reader.connect() as connection:
        return connection.execute(query).scalar() > 0


def test_an_event_that_commits_after_a_later_one_is_not_skipped(client, db):
    session = wide_session(db, width=1)
    first = DbSession(bind=database.engine)
    record_event(first, session.id, "test.first")  # inserted first, committed last
    done = threading.Event()

    def second_writer():
        with DbSession(bind=database.engine) as own:
            record_event(own, session.id, "test.second")
            own.commit()
        done.set()

    writer = threading.Thread(target=second_writer)
    writer.start()
    url = f"/api/v1/sessions/{session.id}/events"
    try:
        # The second writer now waits for the first (before the fix it committed at once).
        wait_until(lambda: done.is_set() or _waiting_for_a_lock(), timeout=10)
        page = client.get(url).json
    finally:
        first.commit()
        first.close()
        writer.join(10)
    rest = client.get(f"{url}?after={page['next_after']}").json
    types = [event["type"] for event in page["items"] + rest["items"]]
    assert types == ["session.created", "session.queued", "test.first", "test.second"]


def _follow(client, session_id: str, frames: list, errors: list) -> None:
    """Read the session's SSE stream until it ends; collect its events as (id, type)."""
    try:
        response = client.get(f"/api/v1/sessions/{session_id}/events",
                              headers={"Accept": "text/event-stream"}, buffered=False)  # fmt: skip
        buffer = ""
        for chunk in response.iter_encoded():
            buffer += chunk.decode()
            *complete, buffer = buffer.split("\n\n")
            for frame in complete:
                fields = dict(line.split(": ", 1) for line in frame.split("\n") if ": " in line)
                if "data" in fields:
                    frames.append((int(fields["id"]), json.loads(fields["data"])["type"]))
        response.close()
    except Exception as error:  # reported by the test, not lost in the thread
        errors.append(error)


def _page_through(client, session_id: str, pages: list, errors: list, done: threading.Event):
    """Follow the log page by page as fast as possible (`after` = the last page's end) until
    the session finished and a last page was read; collect the events as (seq, type)."""
    try:
        cursor, last_round = 0, False
        while True:
            page = client.get(f"/api/v1/sessions/{session_id}/events?after={cursor}").json
            pages.extend((event["seq"], event["type"]) for event in page["items"])
            cursor = page["next_after"]
            if last_round and not page["items"]:
                return
            last_round = done.is_set()
    except Exception as error:
        errors.append(error)


def test_readers_get_every_event_of_racing_completions_once_in_order(app, client, db):
    session = wide_session(db)
    dispatch = launch(db, session.id)
    db.commit()
    ids = {t.key: t.id for t in db.scalars(select(SessionTask).filter_by(session_id=session.id))}
    jobs = []
    for index in range(WIDTH):
        job = claim(db, session.id, ids[f"t{index}"], dispatch.epoch)
        assert attempts.start_attempt(db, job, 1)
        db.commit()
        jobs.append(job)
    frames, pages, errors, finished = [], [], [], threading.Event()
    paging_client = app.test_client()  # a client of its own, with the same token
    paging_client.environ_base.update(client.environ_base)
    reader = threading.Thread(target=_follow, args=(client, session.id, frames, errors))
    pager = threading.Thread(target=_page_through,
                             args=(paging_client, session.id, pages, errors, finished))  # fmt: skip
    reader.start()
    pager.start()
    barrier = threading.Barrier(WIDTH)

    def complete(job):
        try:
            with DbSession(bind=database.engine) as own:
                barrier.wait()
                record_outcome(own, job, dispatch.epoch, OK, 0.01, 1)
                own.commit()
        except Exception as error:
            errors.append(error)

    finishing = [threading.Thread(target=complete, args=(job,)) for job in jobs]
    for thread in finishing:
        thread.start()
    for thread in finishing:
        thread.join(60)
    join = claim(db, session.id, ids["join"], dispatch.epoch)
    assert attempts.start_attempt(db, join, 1)
    db.commit()
    record_outcome(db, join, dispatch.epoch, OK, 0.01, 1)
    db.commit()
    finished.set()
    reader.join(60)
    pager.join(60)
    assert not reader.is_alive() and not pager.is_alive() and errors == []
    assert db.get(Session, session.id).status is SessionStatus.COMPLETED
    logged = db.execute(
        select(SessionEvent.seq, SessionEvent.type)
        .where(SessionEvent.session_id == session.id)
        .order_by(SessionEvent.seq)
    ).all()
    assert [seq for seq, _ in logged] == list(range(1, len(logged) + 1))
    assert frames == [tuple(row) for row in logged]
    assert pages == [tuple(row) for row in logged]
    assert sum(kind == "task.completed" for _, kind in frames) == WIDTH + 1
