"""Approvals through the API and the CLI, without a worker: plan approvals, the inbox, budgets
at submit (the price table), expiry, metrics."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from werkzeug.serving import make_server

from app.cli.main import main as cli
from app.engine import approvals as engine_approvals
from app.engine.transactions import in_transaction
from app.services import approvals
from models import Approval
from models.base import utcnow

ONE_TASK = {"tasks": [{"key": "only", "command": "true"}]}


def submit(client, **body):
    body = {"title": "t", "prompt": "p", "dag": ONE_TASK, **body}
    return client.post("/api/v1/sessions", json=body)


def plan_approval(client, **body):
    response = submit(client, approve_plan=True, **body)
    assert response.status_code == 201, response.json
    session = response.json
    assert session["status"] == "paused" and session["pause_reason"] == "plan"
    page = client.get(f"/api/v1/sessions/{session['id']}/approvals").json
    (approval,) = page["items"]
    return session, approval


def test_the_inbox_pages_pending_approvals_and_a_decision_leaves_it(client, db):
    made = [plan_approval(client)[1]["id"] for _ in range(3)]
    page = client.get("/api/v1/approvals?status=pending&page_size=2").json
    assert page["total"] == 3 and [a["id"] for a in page["items"]] == made[:2]
    assert client.get("/api/v1/approvals?status=pending&page=2&page_size=2").json["items"][0][
        "id"] == made[2]  # fmt: skip
    decided = client.post(f"/api/v1/approvals/{made[0]}", json={"decision": "reject",
                                                                "comment": "no"})  # fmt: skip
    assert decided.status_code == 200 and decided.json["comment"] == "no"
    assert client.get("/api/v1/approvals?status=pending").json["total"] == 2
    assert client.get("/api/v1/approvals?status=rejected").json["total"] == 1
    assert client.get("/api/v1/sessions/nope/approvals").status_code == 404
    assert client.get(f"/api/v1/approvals/{made[1]}").json["kind"] == "plan"


def test_a_budget_must_be_positive_and_goes_with_approve_only(client, db):
    assert submit(client, budget={"max_tokens": 0}).status_code == 422
    assert submit(client, budget={"max_cost_usd": -1}).status_code == 422
    _, approval = plan_approval(client)
    answer = client.post(
        f"/api/v1/approvals/{approval['id']}",
        json={"decision": "reject", "budget": {"max_tokens": 5}},
    )
    assert answer.status_code == 422


def test_a_session_shows_its_budget_and_spent_figures(client, db):
    session = submit(client, budget={"max_tokens": 1000, "max_agent_seconds": 60}).json
    body = client.get(f"/api/v1/sessions/{session['id']}").json
    assert body["budget"] == {"max_tokens": 1000, "max_agent_seconds": 60}
    assert body["metrics"]["spent"] == {"tokens": 0, "cost_usd": 0.0, "agent_seconds": 0.0}
    assert body["tasks"][0]["metrics"]["spent"]["tokens"] == 0


OPENCODE_AGENT = {"name": "oc-priced", "type": "implementer", "capabilities": ["code_generation"],
                  "driver": "opencode", "endpoint": "http://127.0.0.1:4096",
                  "model": "fake/unpriced"}  # fmt: skip


def test_a_cost_budget_on_a_model_without_a_price_is_a_422(app, client, db):
    assert client.post("/api/v1/agents", json=OPENCODE_AGENT).status_code == 201
    dag = {"tasks": [{"key": "code", "description": "write it"}]}
    refused = submit(client, dag=dag, budget={"max_cost_usd": 1.5})
    assert refused.status_code == 422
    assert "fake/unpriced" in refused.json["message"]
    per_task = {"tasks": [{"key": "code", "description": "x", "budget": {"max_cost_usd": 1}}]}
    assert submit(client, dag=per_task).status_code == 422
    assert submit(client, dag=dag, budget={"max_tokens": 100}).status_code == 201
    app.config["MODEL_PRICES"] = {"fake/unpriced": {"input_per_mtok": 1, "output_per_mtok": 4}}
    try:
        assert submit(client, dag=dag, budget={"max_cost_usd": 1.5}).status_code == 201
    finally:
        app.config.pop("MODEL_PRICES")


def test_an_expired_approval_takes_its_default_decision(client, db, app):
    session, approval = plan_approval(
        client, approvals={"expires_in_seconds": 60, "default_decision": "reject"}
    )
    assert approval["expires_at"] and approval["default_decision"] == "reject"
    with app.app_context():
        assert in_transaction(approvals.due_for_expiry) == []
        in_transaction(lambda s: s.get(Approval, approval["id"]).__setattr__(
            "expires_at", utcnow() - timedelta(seconds=1)))  # fmt: skip
        assert in_transaction(approvals.due_for_expiry) == [approval["id"]]
        decided = in_transaction(engine_approvals.expire, approval["id"])
        assert decided.approval.status.value == "expired"
        assert in_transaction(engine_approvals.expire, approval["id"]) is None
    body = client.get(f"/api/v1/sessions/{session['id']}").json
    assert body["status"] == "cancelled"
    assert client.get(f"/api/v1/approvals/{approval['id']}").json["decided_by"] == "expiry"


def test_metrics_count_pending_approvals(client, db, app):
    plan_approval(client)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'orchestrator_approvals_pending{kind="plan"}' in text
    assert "orchestrator_session_spend" in text


@pytest.fixture
def api_url(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_the_cli_lists_approves_and_rejects(client, db, api_url, admin_token, capsys):
    first, approval = plan_approval(client)
    _, other = plan_approval(client)
    base = ["--api", api_url, "--token", admin_token]
    assert cli([*base, "approvals"]) == 0
    listed = capsys.readouterr().out
    assert approval["id"] in listed and other["id"] in listed and "plan" in listed
    assert cli([*base, "reject", other["id"], "--comment", "later"]) == 0
    assert "rejected by test-admin" in capsys.readouterr().out
    assert cli([*base, "approve", approval["id"]]) == 0
    assert "approved" in capsys.readouterr().out
    assert cli([*base, "approve", approval["id"]]) == 2  # already decided: a 409
    assert "already decided" in capsys.readouterr().err
    assert cli([*base, "approvals", "--status", "all", "--json"]) == 0
    assert '"total": 2' in capsys.readouterr().out
    status = client.get(f"/api/v1/sessions/{first['id']}").json["status"]
    assert status in ("queued", "running", "completed")  # resumed (a worker may run it)
