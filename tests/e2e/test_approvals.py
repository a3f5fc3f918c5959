"""Approval gates, plan approvals and budgets of shell tasks, with a real worker."""

from __future__ import annotations

import threading

import pytest

from tests.conftest import wait_until

pytestmark = pytest.mark.e2e

AGENT = {
    "name": "shell-approvals",
    "type": "implementer",
    "capabilities": ["code_generation"],
    "driver": "shell",
    "capacity": 4,
}


@pytest.fixture
def agent(client, db):
    return client.post("/api/v1/agents", json=AGENT).json


def submit(client, tasks, **body):
    response = client.post(
        "/api/v1/sessions",
        json={"title": "approvals", "prompt": "p", "dag": {"tasks": tasks}, **body},
    )
    assert response.status_code == 201, response.json
    return response.json["id"]


def detail(client, session_id):
    return client.get(f"/api/v1/sessions/{session_id}").json


def wait_status(client, session_id, *statuses, timeout=60):
    def reached():
        body = detail(client, session_id)
        return body if body["status"] in statuses else None

    return wait_until(reached, timeout, interval=0.1, message=f"session {statuses}")


def task_of(body, key):
    return next(task for task in body["tasks"] if task["key"] == key)


def pending_approvals(client, session_id, kind):
    def found():
        items = client.get(f"/api/v1/sessions/{session_id}/approvals?status=pending").json
        return [a for a in items["items"] if a["kind"] == kind] or None

    return wait_until(found, 60, interval=0.1, message=f"a pending {kind} approval")


def event_types(client, session_id):
    events = client.get(f"/api/v1/sessions/{session_id}/events?limit=500").json
    items = events["items"] if isinstance(events, dict) else events
    return [event["type"] for event in items]


GATED = [
    {"key": "build", "command": "echo built-ok"},
    {"key": "deploy", "command": "echo deployed", "depends_on": ["build"],
     "requires_approval": True},
    {"key": "notify", "command": "echo notified", "depends_on": ["deploy"]},
]  # fmt: skip


def test_a_gate_waits_shows_its_predecessors_and_runs_once_approved(client, agent, worker):
    session_id = submit(client, GATED)
    (approval,) = pending_approvals(client, session_id, "gate")
    body = detail(client, session_id)
    assert task_of(body, "build")["status"] == "completed"
    assert task_of(body, "deploy")["status"] == "awaiting_approval"
    assert task_of(body, "notify")["status"] == "pending"
    (shown,) = approval["figures"]["predecessors"]
    assert shown["key"] == "build" and "built-ok" in shown["stdout_tail"]
    inbox = client.get("/api/v1/approvals?status=pending").json
    assert approval["id"] in [item["id"] for item in inbox["items"]]

    decided = client.post(f"/api/v1/approvals/{approval['id']}", json={"decision": "approve"})
    assert decided.status_code == 200, decided.json
    assert decided.json["status"] == "approved"
    assert decided.json["decided_by"] == "test-admin"
    body = wait_status(client, session_id, "completed", "failed")
    assert body["status"] == "completed", body
    again = client.post(f"/api/v1/approvals/{approval['id']}", json={"decision": "reject"})
    assert again.status_code == 409
    types = event_types(client, session_id)
    assert "approval.requested" in types and "approval.decided" in types


def test_rejecting_a_gate_fails_the_task_with_the_comment_and_skips_its_dependants(
    client, agent, worker
):
    session_id = submit(client, GATED)
    (approval,) = pending_approvals(client, session_id, "gate")
    decided = client.post(
        f"/api/v1/approvals/{approval['id']}",
        json={"decision": "reject", "comment": "not on a Friday"},
    )
    assert decided.status_code == 200, decided.json
    body = wait_status(client, session_id, "failed", "completed")
    assert body["status"] == "failed"
    assert "not on a Friday" in task_of(body, "deploy")["error"]
    assert task_of(body, "deploy")["status"] == "failed"
    assert task_of(body, "notify")["status"] == "skipped"


def test_racing_decisions_exactly_one_wins(app, client, agent, worker, admin_token):
    session_id = submit(client, GATED)
    (approval,) = pending_approvals(client, session_id, "gate")
    barrier = threading.Barrier(6)
    answers: list[int] = []

    def decide(decision):
        own = app.test_client()
        own.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {admin_token}"
        barrier.wait()
        answer = own.post(f"/api/v1/approvals/{approval['id']}", json={"decision": decision})
        answers.append(answer.status_code)

    threads = [threading.Thread(target=decide, args=(("approve", "reject")[i % 2],))
               for i in range(6)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(answers) == [200, 409, 409, 409, 409, 409]
    decisions = [e for e in event_types(client, session_id) if e == "approval.decided"]
    assert len(decisions) == 1
    wait_status(client, session_id, "completed", "failed")


def test_approve_plan_holds_the_session_until_approved(client, agent, worker):
    session_id = submit(client, [{"key": "only", "command": "echo ran"}], approve_plan=True)
    body = detail(client, session_id)
    assert body["status"] == "paused" and body["pause_reason"] == "plan"
    (approval,) = pending_approvals(client, session_id, "plan")
    assert [task["key"] for task in approval["figures"]["tasks"]] == ["only"]
    assert task_of(detail(client, session_id), "only")["status"] == "pending"
    client.post(f"/api/v1/approvals/{approval['id']}", json={"decision": "approve"})
    assert wait_status(client, session_id, "completed", "failed")["status"] == "completed"


def test_rejecting_the_plan_cancels_the_session(client, agent, worker):
    session_id = submit(client, [{"key": "only", "command": "echo ran"}], approve_plan=True)
    (approval,) = pending_approvals(client, session_id, "plan")
    client.post(f"/api/v1/approvals/{approval['id']}", json={"decision": "reject",
                                                             "comment": "too big"})  # fmt: skip
    body = wait_status(client, session_id, "cancelled")
    assert "too big" in body["error"]
    assert task_of(body, "only")["executions"] == 0


def _slow_once(tmp_path):
    marker = tmp_path / "ran-once"
    return f"if [ -f {marker} ]; then echo second-run; else touch {marker}; sleep 60; fi"


def test_a_spent_agent_time_budget_pauses_and_a_raised_budget_completes(
    client, agent, worker, tmp_path
):
    session_id = submit(
        client,
        [{"key": "slow", "command": _slow_once(tmp_path)}, {"key": "after", "command": "true",
                                                             "depends_on": ["slow"]}],
        budget={"max_agent_seconds": 2},
    )  # fmt: skip
    body = wait_status(client, session_id, "paused", timeout=60)
    assert body["pause_reason"] == "budget"
    (approval,) = pending_approvals(client, session_id, "budget")
    figures = approval["figures"]
    assert figures["scope"] == "session" and figures["limits"] == {"max_agent_seconds": 2}
    # Checked at each heartbeat (1 s here): the overshoot is at most one heartbeat, plus the
    # time the engine takes to stop the command.
    assert 2 <= figures["spent"]["agent_seconds"] < 2 + 1 + 2

    def interrupted():
        task = task_of(detail(client, session_id), "slow")
        return task if task["status"] == "paused" else None

    task = wait_until(interrupted, 60, interval=0.1, message="the attempt to be interrupted")
    assert task["executions"] == 0 and "budget" in task["error"]
    assert client.get(f"/api/v1/agents/{agent['id']}").json["tasks_failed"] == 0
    refused = client.post(
        f"/api/v1/approvals/{approval['id']}",
        json={"decision": "approve", "budget": {"max_agent_seconds": 1}},
    )
    assert refused.status_code == 422  # not above what was spent
    decided = client.post(
        f"/api/v1/approvals/{approval['id']}",
        json={"decision": "approve", "budget": {"max_agent_seconds": 600}},
    )
    assert decided.status_code == 200, decided.json
    body = wait_status(client, session_id, "completed", "failed", "paused")
    assert body["status"] == "completed", body
    assert "second-run" in task_of(body, "slow")["result"]["stdout_tail"]
    assert body["budget"] == {"max_agent_seconds": 600}
    assert body["metrics"]["spent"]["agent_seconds"] >= 2
    types = event_types(client, session_id)
    assert {"budget.warning", "budget.exhausted", "task.interrupted"} <= set(types)


def test_rejecting_a_spent_budget_cancels_the_session(client, agent, worker, tmp_path):
    session_id = submit(client, [{"key": "slow", "command": "sleep 60", "budget":
                                  {"max_agent_seconds": 1.5}}])  # fmt: skip
    (approval,) = pending_approvals(client, session_id, "budget")
    assert approval["figures"]["scope"] == "task"
    client.post(f"/api/v1/approvals/{approval['id']}", json={"decision": "reject"})
    body = wait_status(client, session_id, "cancelled")
    assert task_of(body, "slow")["status"] == "cancelled"


def test_a_second_decision_is_a_409_and_unknown_is_a_404(client, agent, worker):
    session_id = submit(client, [{"key": "only", "command": "true"}], approve_plan=True)
    (approval,) = pending_approvals(client, session_id, "plan")
    assert client.post(f"/api/v1/approvals/{approval['id']}",
                       json={"decision": "reject"}).status_code == 200  # fmt: skip
    second = client.post(f"/api/v1/approvals/{approval['id']}", json={"decision": "approve"})
    assert second.status_code == 409 and "already decided" in second.json["message"]
    assert client.post("/api/v1/approvals/nope", json={"decision": "approve"}).status_code == 404
    assert client.post(f"/api/v1/approvals/{approval['id']}",
                       json={"decision": "maybe"}).status_code == 422  # fmt: skip


def test_the_beat_expires_a_gate_with_its_default_decision(client, agent, worker, beat):
    """Last in this module: the beat (watchdog, reconciler, expiry) runs until its end."""
    session_id = submit(client, GATED, approvals={"expires_in_seconds": 1,
                                                  "default_decision": "approve"})  # fmt: skip
    (approval,) = pending_approvals(client, session_id, "gate")
    body = wait_status(client, session_id, "completed", "failed", timeout=90)
    assert body["status"] == "completed", body
    expired = client.get(f"/api/v1/approvals/{approval['id']}").json
    assert expired["status"] == "expired" and expired["decided_by"] == "expiry"
