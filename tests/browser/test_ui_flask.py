"""The dashboard through Flask's test client: sign-in and its cookie, CSRF, scopes, revocation,
the list's filters, the offline Swagger UI, the vendored files and the palette's contrast."""

from __future__ import annotations

import base64
import json
import zlib

import pytest
from sqlalchemy import text

from app.ui import palette, vendor
from tests.browser.helpers import csrf_of, make_token, queued_session, sign_in


@pytest.fixture
def ui(app, db):
    """A fresh browser-like client (cookies kept) with no token."""
    return app.test_client()


def cookie_payload(client) -> dict:
    """What the signed session cookie holds (decoded, not verified)."""
    cookie = client.get_cookie("orchestrator_ui", path="/ui")
    assert cookie is not None
    data = cookie.value.split(".")[0 if not cookie.value.startswith(".") else 1]
    raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    return json.loads(zlib.decompress(raw) if cookie.value.startswith(".") else raw)


def test_pages_send_a_signed_out_browser_to_the_form(ui):
    response = ui.get("/ui/", headers={"Accept": "text/html"})
    assert response.status_code == 302 and "/ui/login?next=/ui/" in response.location
    page = ui.get("/ui/login").get_data(as_text=True)
    assert 'name="token"' in page and '<label for="token">' in page
    assert ui.get("/ui/sessions.json").status_code == 401
    assert ui.get("/ui/stream").status_code == 401


def test_sign_in_sets_an_httponly_samesite_cookie_without_the_secret(app, ui):
    token_id, secret = make_token(app, "read")
    response = sign_in(ui, secret)
    assert response.status_code == 303 and response.location.endswith("/ui/")
    header = response.headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/ui" in header
    assert "Secure" not in header  # plain http here; https below
    payload = cookie_payload(ui)
    assert payload["token_id"] == token_id and secret not in json.dumps(payload)
    assert ui.get("/ui/").status_code == 200


def test_the_cookie_is_secure_over_https(app):
    _, secret = make_token(app, "read")
    client = app.test_client()
    page = client.get("/ui/login", base_url="https://localhost").get_data(as_text=True)
    response = client.post("/ui/login", base_url="https://localhost",
                           data={"token": secret, "csrf_token": csrf_of(page)})  # fmt: skip
    assert response.status_code == 303 and "Secure" in response.headers["Set-Cookie"]


def test_a_wrong_token_or_a_missing_csrf_token_is_refused(app, ui):
    _, secret = make_token(app, "read")
    page = ui.get("/ui/login").get_data(as_text=True)
    wrong = ui.post("/ui/login", data={"token": "orch_" + "x" * 43, "csrf_token": csrf_of(page)})
    assert wrong.status_code == 401 and "invalid or revoked" in wrong.get_data(as_text=True)
    no_csrf = ui.post("/ui/login", data={"token": secret})
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.get_data(as_text=True)
    forged = ui.post("/ui/login", data={"token": secret, "csrf_token": "forged"})
    assert forged.status_code == 403


def test_a_read_token_sees_no_action_and_cannot_act(app, db, ui):
    session_id = queued_session(db)
    _, secret = make_token(app, "read")
    sign_in(ui, secret)
    page = ui.get(f"/ui/sessions/{session_id}").get_data(as_text=True)
    assert 'data-task-key="a"' in page and "data-action=" not in page
    assert json.loads(ui.get(f"/ui/sessions/{session_id}/state.json").data)["actions"] == []
    csrf = csrf_of(page)
    refused = ui.post(f"/ui/sessions/{session_id}/actions/pause", data={"csrf_token": csrf})
    assert refused.status_code == 403
    assert "lacks the &#39;write&#39; scope" in refused.get_data(as_text=True)
    status = db.execute(text("SELECT status FROM sessions WHERE id = :id"), {"id": session_id})
    assert status.scalar() == "queued"


def test_a_write_token_pauses_with_the_csrf_token_only(app, db, ui):
    session_id = queued_session(db)
    _, secret = make_token(app, "write")
    sign_in(ui, secret)
    page = ui.get(f"/ui/sessions/{session_id}").get_data(as_text=True)
    assert 'data-action="pause"' in page and 'data-action="cancel"' in page
    assert 'data-action="resume"' not in page  # not allowed while queued
    url = f"/ui/sessions/{session_id}/actions/pause"
    assert ui.post(url).status_code == 403  # no CSRF token
    done = ui.post(url, data={"csrf_token": csrf_of(page)})
    assert done.status_code == 303 and done.location.endswith(f"/ui/sessions/{session_id}")
    db.expire_all()
    status = db.execute(text("SELECT status FROM sessions WHERE id = :id"), {"id": session_id})
    assert status.scalar() == "paused"
    after = ui.get(f"/ui/sessions/{session_id}").get_data(as_text=True)
    assert 'data-action="resume"' in after and 'data-action="pause"' not in after
    assert "Pause: the session is paused." in after
    again = ui.post(url, data={"csrf_token": csrf_of(after)}, follow_redirects=True)
    assert "Cannot pause a session that is paused." in again.get_data(as_text=True)


def test_a_revoked_token_s_cookie_stops_working_and_sign_out_forgets_it(app, db, ui):
    token_id, secret = make_token(app, "read")
    sign_in(ui, secret)
    assert ui.get("/ui/").status_code == 200
    db.execute(text("UPDATE api_tokens SET revoked_at = now() WHERE id = :id"), {"id": token_id})
    db.commit()
    assert ui.get("/ui/", headers={"Accept": "text/html"}).status_code == 302
    other = app.test_client()
    _, secret = make_token(app, "read")
    sign_in(other, secret)
    page = other.get("/ui/").get_data(as_text=True)
    assert other.post("/ui/logout", data={"csrf_token": csrf_of(page)}).status_code == 303
    assert other.get("/ui/", headers={"Accept": "text/html"}).status_code == 302


def test_the_list_filters_by_status_type_tag_and_text_and_pages(app, db, ui):
    first = queued_session(db, title="alpha migration", tags=["db"])
    queued_session(db, title="beta frontend", type="review")
    _, secret = make_token(app, "read")
    sign_in(ui, secret)

    def titles(**query):
        data = json.loads(ui.get("/ui/sessions.json", query_string=query).data)
        return sorted(row["title"] for row in data["rows"]), data

    assert titles()[0] == ["alpha migration", "beta frontend"]
    assert titles(text="MIGRAT")[0] == ["alpha migration"]
    assert titles(text=first[:8])[0] == ["alpha migration"]
    assert titles(tag="db")[0] == ["alpha migration"]
    assert titles(type="review")[0] == ["beta frontend"]
    assert titles(status="running")[0] == []
    assert titles(status="no-such-status")[0] == []
    assert titles(text="100%_")[0] == []  # LIKE wildcards are literal
    rows, data = titles(page_size=1)
    assert data["counts"] == {"queued": 2} and data["total"] == 2
    page = ui.get("/ui/", query_string={"text": "a"}).get_data(as_text=True)
    assert "alpha migration" in page and "2 sessions" in page
    assert ui.get("/ui/?page=x").status_code == 422


def test_swagger_ui_is_served_from_the_app(anonymous_client):
    page = anonymous_client.get("/api/docs").get_data(as_text=True)
    assert "/ui/static/vendor/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower() and "https://" not in page
    for name in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"):
        response = anonymous_client.get(f"/ui/static/vendor/swagger-ui-dist/{name}")
        assert response.status_code == 200 and len(response.data) > 1000, name


def test_the_vendored_files_match_their_manifest_and_carry_licences():
    assert vendor.check() == []
    manifest = json.loads((vendor.VENDOR / "manifest.json").read_text())
    for package, entry in manifest["packages"].items():
        assert entry["version"] == vendor.PACKAGES[package][0]
        assert any(name.endswith("LICENSE") for name in entry["files"]), package


def test_pages_load_only_their_own_scripts(app, ui):
    _, secret = make_token(app, "read")
    sign_in(ui, secret)
    response = ui.get("/ui/")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    for page in ("/ui/", "/ui/agents", "/ui/submit", "/ui/login"):
        assert "https://" not in ui.get(page).get_data(as_text=True), page


def test_every_status_colour_and_the_page_text_meet_wcag_aa():
    for status, (fill, ink) in palette.STATUS_COLOURS.items():
        assert palette.contrast(fill, ink) >= palette.MIN_CONTRAST, status
    page, body = palette.PAGE
    assert palette.contrast(page, body) >= 7
    for colour in (palette.MUTED_TEXT, palette.LINK, palette.FOCUS):
        assert palette.contrast(page, colour) >= palette.MIN_CONTRAST, colour
    assert palette.contrast("#000000", "#ffffff") == pytest.approx(21)
    css = palette.css()
    assert all(f".status-{status}{{" in css for status in palette.STATUS_COLOURS)


def test_the_gantt_shows_each_attempt_s_queue_wait_apart_from_its_run():
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    from app.ui.queries import gantt

    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def at(seconds: float, type: str, task_id=None, **data):
        return SimpleNamespace(type=type, task_id=task_id, data=data,
                               created_at=t0 + timedelta(seconds=seconds))  # fmt: skip

    detail = {"tasks": [{"id": "A", "key": "a", "depends_on": []},
                        {"id": "B", "key": "b", "depends_on": [{"key": "a"}]}]}  # fmt: skip
    events = [
        at(0, "session.launched"),
        at(0.5, "task.assigned", "A", attempt=1), at(1, "task.started", "A", attempt=1),
        at(3, "task.completed", "A"),
        at(3.2, "task.assigned", "B", attempt=1), at(3.5, "task.started", "B", attempt=1),
        at(4, "task.retry_scheduled", "B", attempt=1, delay_s=1.0),
        at(6, "task.assigned", "B", attempt=2), at(6.5, "task.started", "B", attempt=2),
        at(7, "task.completed", "B"),
    ]  # fmt: skip
    bars = {(bar["key"], bar["attempt"]): bar for bar in gantt(detail, events)["bars"]}
    assert (bars["a", 1]["wait_ms"], bars["a", 1]["run_ms"]) == (1000, 2000)  # from the launch
    assert (bars["b", 1]["wait_ms"], bars["b", 1]["run_ms"]) == (500, 500)  # from a's end
    assert bars["b", 1]["outcome"] == "retry_scheduled"
    # the retry could run once its delay was over (5 s), and started at 6.5 s
    assert (bars["b", 2]["wait_ms"], bars["b", 2]["run_ms"]) == (1500, 500)
    assert bars["b", 2]["run_left"] + bars["b", 2]["run_width"] == pytest.approx(100)
    assert bars["a", 1]["wait_left"] == 0


def test_the_install_secret_is_made_once_kept_private_and_shared(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from app.config import install_secret

    path = tmp_path / "keys" / "secret-key"
    with ThreadPoolExecutor(8) as pool:  # racing web workers all get the one that won
        secrets_made = set(pool.map(lambda _: install_secret(path), range(16)))
    assert len(secrets_made) == 1 and len(secrets_made.pop()) == 64
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["secret-key"]  # no drafts left
