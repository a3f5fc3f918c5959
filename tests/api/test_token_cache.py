"""Verified tokens are cached per process: requests need no token query, a revocation reaches
every process at once through PostgreSQL NOTIFY, and TOKEN_CACHE_SECONDS bounds a lost one."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import event, text

from app.extensions import db as database
from app.services import tokens
from tests.conftest import ensure_token, wait_until


@pytest.fixture
def listener(app):
    listener = app.extensions["token_revocations"]
    listener.ensure_running()
    wait_until(lambda: listener.cache.live, 10, message="the revocation listener to subscribe")
    return listener


@pytest.fixture
def reader(app, db):
    """A read token of this test: (id, secret)."""
    token_id, secret = str(uuid.uuid4()), tokens.new_secret()
    ensure_token(app, token_id, secret, ["read"])
    return token_id, secret


def status(anonymous_client, secret: str) -> int:
    headers = {"Authorization": f"Bearer {secret}"}
    return anonymous_client.get("/api/v1/agents", headers=headers).status_code


def revoke_behind_the_apps_back(db, token_id: str, notify: bool) -> None:
    """Revoke as another process would: SQL on another connection, announced or not."""
    db.execute(text("UPDATE api_tokens SET revoked_at = now() WHERE id = :id"), {"id": token_id})
    if notify:
        db.execute(text("SELECT pg_notify(:channel, :id)"),
                   {"channel": tokens.REVOKED_CHANNEL, "id": token_id})  # fmt: skip
    db.commit()


def token_queries(statements: list[str]) -> int:
    return sum("api_tokens" in statement for statement in statements)


def test_a_verified_token_needs_no_query_and_its_secret_is_not_kept(
    anonymous_client, listener, reader
):
    statements: list[str] = []
    record = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(database.engine, "before_cursor_execute", record)
    try:
        assert [status(anonymous_client, reader[1]) for _ in range(3)] == [200, 200, 200]
    finally:
        event.remove(database.engine, "before_cursor_execute", record)
    assert token_queries(statements) == 2  # the first request's look-up and last_used_at
    assert reader[1] not in repr(listener.cache._entries)


def test_a_revocation_by_another_process_is_refused_at_once(
    anonymous_client, listener, reader, db, monkeypatch
):
    monkeypatch.setattr(listener.cache, "ttl", 3600.0)  # only the notification can clear it
    assert status(anonymous_client, reader[1]) == 200
    revoke_behind_the_apps_back(db, reader[0], notify=True)
    wait_until(lambda: status(anonymous_client, reader[1]) == 401, 5,
               message="the revoked token to be refused")  # fmt: skip


def test_without_a_notification_the_ttl_bounds_the_revocation_delay(
    anonymous_client, listener, reader, db, monkeypatch
):
    monkeypatch.setattr(listener.cache, "ttl", 3600.0)
    assert status(anonymous_client, reader[1]) == 200
    revoke_behind_the_apps_back(db, reader[0], notify=False)
    assert status(anonymous_client, reader[1]) == 200  # served from the cache
    listener.cache.clear()
    monkeypatch.setattr(listener.cache, "ttl", 0.2)
    assert status(anonymous_client, reader[1]) == 401
    other_id, other = str(uuid.uuid4()), tokens.new_secret()
    ensure_token(anonymous_client.application, other_id, other, ["read"])
    assert status(anonymous_client, other) == 200
    revoke_behind_the_apps_back(db, other_id, notify=False)
    wait_until(lambda: status(anonymous_client, other) == 401, 5,
               message="the cached verification to expire")  # fmt: skip


def test_the_listener_reconnects_and_trusts_nothing_it_may_have_missed(
    anonymous_client, listener, reader, db, monkeypatch
):
    monkeypatch.setattr(listener.cache, "ttl", 3600.0)
    assert status(anonymous_client, reader[1]) == 200
    killed = db.execute(text(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = :name AND datname = current_database()"
    ), {"name": listener.APPLICATION_NAME}).scalars().all()  # fmt: skip
    assert killed and all(killed)  # this app's listener, and those of apps other tests made
    # Revoked while the listener may be down, without a notification: the reconnection clears
    # the cache, so the token is looked up again.
    revoke_behind_the_apps_back(db, reader[0], notify=False)
    wait_until(lambda: status(anonymous_client, reader[1]) == 401, 10,
               message="the token to be looked up again")  # fmt: skip
    wait_until(lambda: listener.cache.live, 10, message="the listener to subscribe again")


def test_the_cache_can_be_turned_off():
    from app.api.auth import token_cache_seconds

    assert token_cache_seconds({"TOKEN_CACHE_SECONDS": "0"}) == 0
    assert token_cache_seconds({"TOKEN_CACHE_SECONDS": 2.5}) == 2.5
