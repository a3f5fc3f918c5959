"""The dashboard's approvals inbox through Flask's test client: what read and write tokens
see, a decision by form (CSRF-checked) and a second decision refused."""

from __future__ import annotations

from sqlalchemy import text

from tests.browser.helpers import csrf_of, make_token, sign_in

PLANNED = {"title": "t", "prompt": "p", "approve_plan": True,
           "dag": {"tasks": [{"key": "only", "command": "true"}]}}  # fmt: skip


def pending_plan(client) -> tuple[str, str]:
    session = client.post("/api/v1/sessions", json=PLANNED).json
    (approval,) = client.get(f"/api/v1/sessions/{session['id']}/approvals").json["items"]
    return session["id"], approval["id"]


def test_a_read_token_sees_the_inbox_without_forms(app, client, db):
    _, approval_id = pending_plan(client)
    ui = app.test_client()
    sign_in(ui, make_token(app, "read")[1])
    page = ui.get("/ui/approvals").get_data(as_text=True)
    assert f'data-approval-id="{approval_id}"' in page and 'data-kind="plan"' in page
    assert "data-decision=" not in page
    refused = ui.post(f"/ui/approvals/{approval_id}",
                      data={"csrf_token": csrf_of(page), "decision": "approve"})  # fmt: skip
    assert refused.status_code == 403


def test_a_write_token_rejects_by_form_once(app, client, db):
    session_id, approval_id = pending_plan(client)
    ui = app.test_client()
    sign_in(ui, make_token(app, "write")[1])
    page = ui.get("/ui/approvals").get_data(as_text=True)
    assert 'data-decision="approve"' in page and 'data-decision="reject"' in page
    url = f"/ui/approvals/{approval_id}"
    assert ui.post(url, data={"decision": "reject"}).status_code == 403  # no CSRF token
    form = {"csrf_token": csrf_of(page), "decision": "reject", "comment": "not now"}
    done = ui.post(url, data=form, follow_redirects=True)
    assert done.status_code == 200
    assert f'data-approval-id="{approval_id}"' not in done.get_data(as_text=True)
    db.expire_all()
    row = db.execute(text("SELECT status, comment FROM approvals WHERE id = :id"),
                     {"id": approval_id}).one()  # fmt: skip
    assert (row.status, row.comment) == ("rejected", "not now")
    status = db.execute(text("SELECT status FROM sessions WHERE id = :id"), {"id": session_id})
    assert status.scalar() == "cancelled"
    again = ui.post(url, data={**form, "csrf_token": csrf_of(done.get_data(as_text=True))},
                    follow_redirects=True)  # fmt: skip
    assert "already decided" in again.get_data(as_text=True)
