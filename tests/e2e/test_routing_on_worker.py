"""A real worker routes submitted tasks by all five score components and the avoided-technology
filter, and each assignment is the one `POST /agents/route` explains for the task's spec."""

import pytest

from tests.conftest import wait_until

pytestmark = pytest.mark.e2e

BASE = "/api/v1"
AGENTS = [
    {"name": "py-runner", "type": "implementer", "preferred_technologies": ["python"]},
    {"name": "go-architect", "type": "architect", "preferred_technologies": ["go"]},
]
# A chain, so that every task is routed while no other runs (equal loads), and a task that
# every agent avoids.
TASKS = [
    {"key": "py", "command": "true", "technologies": ["Python"]},
    {"key": "go", "command": "true", "technologies": ["go"], "depends_on": ["py"]},
    {"key": "plan", "command": "true", "estimate_hours": 12, "depends_on": ["go"]},
    {"key": "quick", "command": "true", "estimate_hours": 0.1, "depends_on": ["plan"]},
    {"key": "java", "command": "true", "technologies": ["java"]},
]


def test_worker_routes_by_technologies_and_estimate_and_blocks_avoided(client, db, worker):
    ids = {}
    for agent in AGENTS:
        body = {**agent, "driver": "shell", "capabilities": ["code_generation"], "capacity": 4,
                "avoided_technologies": ["Java"]}  # fmt: skip
        ids[client.post(f"{BASE}/agents", json=body).json["id"]] = agent["name"]
    created = client.post(f"{BASE}/sessions", json={"title": "routing", "prompt": "p",
                                                     "dag": {"tasks": TASKS}})  # fmt: skip
    assert created.status_code == 201, created.json
    url = f"{BASE}/sessions/{created.json['id']}"

    def settled():
        tasks = {task["key"]: task for task in client.get(url).json["tasks"]}
        done = all(tasks[key]["status"] == "completed" for key in ("py", "go", "plan", "quick"))
        return tasks if done and tasks["java"]["status"] == "blocked" else None

    tasks = wait_until(settled, 90, interval=0.2, message="chain done and java blocked")
    by = {key: ids.get(task["assigned_agent_id"]) for key, task in tasks.items()}
    assert by == {"py": "py-runner", "go": "go-architect", "plan": "go-architect",
                  "quick": "py-runner", "java": None}  # fmt: skip
    assert tasks["py"]["technologies"] == ["Python"]
    assert "avoids the task's technologies (java): go-architect, py-runner" in (
        tasks["java"]["error"]
    )
    for spec in TASKS:  # every agent is idle again, as it was when each task was claimed
        body = {"required_capabilities": [], "command": spec["command"],
                "technologies": spec.get("technologies", []),
                "estimate_hours": spec.get("estimate_hours")}  # fmt: skip
        explained = client.post(f"{BASE}/agents/route", json=body).json
        chosen = explained["chosen"]["name"] if explained["chosen"] else None
        assert chosen == by[spec["key"]], (spec["key"], explained["reason"])
        if chosen is None:
            assert tasks[spec["key"]]["error"].endswith(explained["reason"])
