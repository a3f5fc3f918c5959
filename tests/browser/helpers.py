"""Helpers of the dashboard's tests: tokens by scope, a queued session, the CSRF token."""

from __future__ import annotations

import re
import uuid

from tests.conftest import ensure_token

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_token(app, scope: str) -> tuple[str, str]:
    """A new token of `scope`: (id, secret)."""
    from app.services.tokens import new_secret

    token_id, secret = str(uuid.uuid4()), new_secret()
    ensure_token(app, token_id, secret, [scope])
    return token_id, secret


def queued_session(db, title: str = "ui", command: str = "true", **extra) -> str:
    """A committed session of one or more shell tasks, queued (no launch sent): its id."""
    from app.services import sessions

    tasks = extra.pop("tasks", None) or [{"key": "a", "command": command}]
    specs = [{"depends_on": [], "description": "", "required_capabilities": [], "optional": False,
              "timeout_seconds": 60, "max_attempts": 1, "estimate_hours": None, **task}
             for task in tasks]  # fmt: skip
    session, _ = sessions.create_session(
        db, {"title": title, "prompt": f"prompt of {title}", "dag": {"tasks": specs}, **extra}
    )
    sessions.start_session(db, session)
    db.commit()
    return session.id


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    match = CSRF.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def sign_in(client, secret: str):
    """Sign a Flask test client in with a token; the response of the form's POST."""
    page = client.get("/ui/login").get_data(as_text=True)
    return client.post("/ui/login", data={"token": secret, "csrf_token": csrf_of(page)})
