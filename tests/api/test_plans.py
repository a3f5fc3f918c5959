"""Previewing a plan over HTTP, and sessions submitted with only a prompt."""

import pytest
from sqlalchemy import func, select

from app.planning import KNOWN_CAPABILITIES
from models import Session

OAUTH = "Add OAuth login to the user service, with a React settings page and a postgres model"
# Everything the heuristics may ask for, except task_decomposition (that makes a planner agent).
WORKER_CAPABILITIES = sorted(KNOWN_CAPABILITIES - {"task_decomposition"})


def opencode_agent(client, name="coder", capabilities=WORKER_CAPABILITIES, **fields):
    body = {
        "name": name,
        "type": "implementer",
        "capabilities": capabilities,
        "driver": "opencode",
        "endpoint": "http://127.0.0.1:9",
        **fields,
    }
    response = client.post("/api/v1/agents", json=body)
    assert response.status_code == 201, response.json
    return response.json


def sessions_count(db):
    return db.scalar(select(func.count()).select_from(Session))


def test_preview_shows_tasks_edges_levels_and_critical_path(client, db):
    response = client.post("/api/v1/plans", json={"prompt": OAUTH, "max_depth": 2})
    assert response.status_code == 200, response.json
    body = response.json
    keys = [task["key"] for task in body["tasks"]]
    assert body["planner"] == "heuristic" and body["fallback_reason"] is None
    assert body["template"] and any("rule security" in reason for reason in body["reasons"])
    assert body["task_count"] == len(keys) >= 5
    assert {"from": "requirements", "to": "design"} in [
        {"from": e["from"], "to": e["to"]} for e in body["edges"]
    ]
    assert sum(len(level) for level in body["levels"]) == len(keys)
    assert body["levels"][0] == ["requirements"]
    assert set(body["critical_path"]) <= set(keys)
    assert 0 < body["expected_makespan_hours"] <= body["total_hours"]
    last = body["tasks"][keys.index(body["critical_path"][-1])]
    assert last["earliest_finish_hours"] == pytest.approx(body["expected_makespan_hours"])
    assert all(task["estimate"]["level"] for task in body["tasks"])
    assert sessions_count(db) == 0


@pytest.mark.parametrize(
    ("prompt", "keys", "why"),
    [
        ("Fix typo in README installation section", ["write"],
         ["documentation-only request", "request size trivial", "one task"]),
        ("Fix the off-by-one error in the pagination helper", ["fix", "review"],
         ["request size simple", "one task and a review"]),
        ("Review the pull request that adds retry logic to the HTTP client", ["review"],
         ["review-only request", "no implementation or deployment"]),
    ],
)  # fmt: skip
def test_preview_of_a_small_request_is_small_and_says_why(client, db, prompt, keys, why):
    response = client.post("/api/v1/plans", json={"prompt": prompt, "planner": "heuristic"})
    assert response.status_code == 200, response.json
    body = response.json
    assert [task["key"] for task in body["tasks"]] == keys
    assert body["task_count"] == len(keys) and len(body["dag"]["tasks"]) == len(keys)
    text = "\n".join(body["reasons"])
    assert all(fragment in text for fragment in why), body["reasons"]


def test_prompt_only_session_records_why_its_plan_has_a_security_review(client, db):
    opencode_agent(client)
    prompt = "Add Stripe checkout to the online shop so customers can pay for their orders"
    response = client.post("/api/v1/sessions", json={"prompt": prompt})
    assert response.status_code == 201, response.json
    keys = [task["key"] for task in response.json["tasks"]]
    assert "security-review" in keys and "requirements" not in keys
    reasons = response.json["plan_info"]["reasons"]
    assert any(r.startswith("request size moderate") for r in reasons)
    assert any(
        r.startswith("rule security (priority 40; payments: stripe, checkout") for r in reasons
    )


def test_preview_dag_can_be_submitted_as_is(client, db):
    opencode_agent(client)
    preview = client.post("/api/v1/plans", json={"prompt": OAUTH}).json
    response = client.post(
        "/api/v1/sessions", json={"title": "OAuth", "prompt": OAUTH, "dag": preview["dag"]}
    )
    assert response.status_code == 201, response.json
    assert [task["key"] for task in response.json["tasks"]] == [t["key"] for t in preview["tasks"]]
    assert response.json["plan_info"] == {}


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   \n "}, "prompt"),
        ({"prompt": "x" * 20001}, "prompt"),
        ({"prompt": "Fix the login bug", "max_depth": 9}, "max_depth"),
        ({"prompt": "Fix the login bug", "target_level": "huge"}, "target_level"),
        ({"prompt": "Fix the login bug", "title": 7}, "title"),
        ({"prompt": "Fix the login bug", "planner": "oracle"}, "planner"),
        ({"prompt": "Fix the login bug", "workdir": "relative/dir"}, "workdir"),
    ],
)
def test_bad_plan_request_is_422_naming_the_field(client, db, body, field):
    response = client.post("/api/v1/plans", json=body)
    assert response.status_code == 422, response.json
    assert field in response.json["errors"], response.json


def test_heuristic_option_skips_the_planner_agent(client, db):
    opencode_agent(client, name="planner", capabilities=["task_decomposition"])
    body = {"prompt": "Fix the crash when the cart is empty", "planner": "heuristic"}
    preview = client.post("/api/v1/plans", json=body).json
    assert preview["planner"] == "heuristic"
    assert preview["agent"] is None


def test_prompt_only_session_is_planned_and_queued(client, db):
    opencode_agent(client)
    response = client.post("/api/v1/sessions", json={"prompt": OAUTH, "tags": ["planned"]})
    assert response.status_code == 201, response.json
    body = response.json
    assert body["status"] == "queued"
    assert body["title"].startswith("Add OAuth login")
    assert len(body["tasks"]) >= 5
    assert all(task["command"] is None for task in body["tasks"])
    assert all(task["description"] for task in body["tasks"])
    info = body["plan_info"]
    assert info["planner"] == "heuristic" and info["reasons"] and info["critical_path"]
    assert info["target_level"] == "moderate" and info["max_depth"] == 3
    fetched = client.get(f"/api/v1/sessions/{body['id']}").json
    assert fetched["plan_info"] == info


def test_planning_options_reach_the_planner(client, db):
    opencode_agent(client)
    body = {"prompt": OAUTH, "title": "OAuth", "planning": {"target_level": "complex"}}
    coarse = client.post("/api/v1/sessions", json=body).json
    fine = client.post(
        "/api/v1/sessions", json={**body, "planning": {"target_level": "simple", "max_depth": 4}}
    ).json
    assert coarse["title"] == "OAuth"
    assert coarse["plan_info"]["target_level"] == "complex"
    assert len(fine["tasks"]) > len(coarse["tasks"])


def test_planned_session_needs_opencode_agents_with_its_capabilities(client, db):
    client.post(
        "/api/v1/agents",
        json={"name": "sh", "type": "implementer", "driver": "shell",
              "capabilities": WORKER_CAPABILITIES},
    )  # fmt: skip
    opencode_agent(client, capabilities=["code_generation"])
    response = client.post("/api/v1/sessions", json={"prompt": OAUTH})
    assert response.status_code == 422, response.json
    assert "planned DAG needs capabilities" in response.json["message"]
    details = " ".join(response.json["errors"]["dag"])
    assert "requirements_analysis" in details and "tasks: requirements" in details
    assert sessions_count(db) == 0


def test_prompt_only_session_with_a_bad_prompt_is_422(client, db):
    opencode_agent(client)
    response = client.post("/api/v1/sessions", json={"prompt": "y" * 20001})
    assert response.status_code == 422
    assert "prompt" in response.json["errors"]
    assert sessions_count(db) == 0


def test_prompt_only_replay_returns_the_first_session(client, db):
    opencode_agent(client)
    headers = {"Idempotency-Key": "plan-1"}
    first = client.post("/api/v1/sessions", json={"prompt": OAUTH}, headers=headers)
    again = client.post("/api/v1/sessions", json={"prompt": OAUTH}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json["id"] == again.json["id"]
    assert sessions_count(db) == 1
