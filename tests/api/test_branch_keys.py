"""Task keys that would share a git branch (each other's, or the integration branch) are refused
at session creation with a 422 naming them, for a given DAG and for a planned one."""

import subprocess

import pytest
from sqlalchemy import func, select

from app.planning import Plan
from app.services import sessions as session_service
from app.services.errors import ValidationFailed
from app.services.planning import session_task_specs
from app.workspaces import branch_clashes, branch_name
from models import Session
from tests.api.test_plans import OAUTH, WORKER_CAPABILITIES, opencode_agent
from tests.integration.test_planner_agent import GOOD_PLAN, FakeOpenCode, message

AGENT = {"name": "runner", "type": "implementer", "capabilities": ["code_generation"],
         "driver": "shell"}  # fmt: skip


@pytest.fixture
def agent(client, db):
    return client.post("/api/v1/agents", json=AGENT).json


def submit(client, *keys):
    tasks = [{"key": key, "command": "true"} for key in keys]
    return client.post("/api/v1/sessions", json={"title": "t", "prompt": "p",
                                                 "dag": {"tasks": tasks}})  # fmt: skip


def sessions(db):
    return db.scalar(select(func.count()).select_from(Session))


@pytest.mark.parametrize(
    "keys",
    [
        ("a", "a."),  # the sanitiser strips a trailing dot
        ("a-", "b", "a"),  # ... and a trailing dash
        ("a..b", "a.b"),  # ... collapses dots
        ("build.lock", "build"),  # ... drops a .lock suffix
        ("build.lock.lock", "build"),  # ... every one of them
        ("Api", "api"),  # one ref on a case-insensitive file system
    ],
)
def test_keys_that_map_to_one_branch_are_422_naming_both(client, agent, db, keys):
    response = submit(client, *keys)
    assert response.status_code == 422, response.json
    clashing = [key for key in keys if key != "b"]
    for key in clashing:
        assert f"'{key}'" in response.json["message"]
    positions = [index for index, key in enumerate(keys) if key in clashing]
    assert sorted(response.json["errors"]) == [f"dag.tasks.{i}.key" for i in positions]
    assert sessions(db) == 0


@pytest.mark.parametrize("key", ["integration", "Integration", "integration.", "integration.lock"])
def test_a_key_that_maps_to_the_integration_branch_is_422(client, agent, db, key):
    response = submit(client, "build", key)
    assert response.status_code == 422, response.json
    assert f"'{key}'" in response.json["message"]
    assert "integration branch" in response.json["message"]
    assert list(response.json["errors"]) == ["dag.tasks.1.key"]
    assert sessions(db) == 0


def test_every_clash_is_listed(client, agent, db):
    response = submit(client, "a", "A", "b.", "b", "integration")
    assert response.status_code == 422
    assert sorted(response.json["errors"]) == [f"dag.tasks.{i}.key" for i in range(5)]
    assert "2 more" in response.json["message"]


def test_keys_with_distinct_branches_are_accepted(client, agent, db):
    response = submit(client, "a", "a-b", "a.b", "a_b", "integration-tests", "integrate")
    assert response.status_code == 201, response.json


def test_every_branch_name_is_a_valid_git_ref():
    for key in ["a.lock.lock", "a..lock", "a-.lock", "x.lock.", "a.b-"]:
        branch = branch_name("s1", key)
        checked = subprocess.run(["git", "check-ref-format", f"refs/heads/{branch}"])
        assert checked.returncode == 0, branch


def test_clashes_are_found_among_10000_keys():
    keys = [f"task-{index}" for index in range(10_000)] + ["TASK-17"]
    assert branch_clashes("s1", keys) == [("orch/s1/task-17", ["task-17", "TASK-17"])]


@pytest.fixture
def opencode():
    server = FakeOpenCode()
    yield server
    server.close()


def test_a_planned_dag_with_clashing_keys_falls_back_to_the_heuristics(client, db, opencode):
    """A planner agent's keys that share a branch are an invalid plan, like a cycle: the
    session is planned by the heuristics instead, and never gets the clashing keys."""
    design = GOOD_PLAN["tasks"][0]
    tasks = [design, {**design, "key": "Design"}, {**design, "key": "integration"}]
    opencode.reply = message({"tasks": tasks})
    opencode_agent(client, name="planner", capabilities=["task_decomposition"],
                   endpoint=opencode.url)  # fmt: skip
    opencode_agent(client, capabilities=WORKER_CAPABILITIES)
    response = client.post("/api/v1/sessions", json={"prompt": OAUTH})
    assert response.status_code == 201, response.json
    info = response.json["plan_info"]
    assert info["planner"] == "heuristic"
    assert "share a git branch" in info["fallback_reason"]
    assert "design, Design" in info["fallback_reason"]
    keys = [task["key"] for task in response.json["tasks"]]
    assert "Design" not in keys and not branch_clashes("s", keys)


def test_a_planned_dag_goes_through_the_same_check(db):
    """Planned data reaches `create_session` like a given DAG (with `plan_info`): the check is
    on that common path, not only in the schema."""
    task = {"key": "design", "title": "Design", "description": "", "phase": "design",
            "required_capabilities": ["system_design"], "depends_on": [], "optional": False,
            "estimate": {"expected_hours": 1.0}}  # fmt: skip
    plan = Plan(tasks=[task, {**task, "key": "DESIGN"}], planner="heuristic", reasons=[],
                critical_path=[], expected_makespan_hours=1, total_hours=2, title="t")  # fmt: skip
    data = {"title": "t", "prompt": "p", "dag": {"tasks": session_task_specs(plan)},
            "plan_info": {"planner": "heuristic"}}  # fmt: skip
    with pytest.raises(ValidationFailed) as refused:
        session_service.create_session(db, data)
    assert "'design', 'DESIGN'" in refused.value.message
