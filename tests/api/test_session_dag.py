"""A session's DAG over HTTP: nodes with status, edges, levels, critical path, DOT and Mermaid."""

import pytest

from models import SessionTask
from models.enums import TaskStatus

AGENT = {"name": "runner", "type": "implementer", "capabilities": ["code_generation"],
         "driver": "shell"}  # fmt: skip


def submit(client, tasks):
    client.post("/api/v1/agents", json=AGENT)
    body = {"title": "Diamond", "prompt": "p", "dag": {"tasks": tasks}}
    response = client.post("/api/v1/sessions", json=body)
    assert response.status_code == 201, response.json
    return response.json["id"]


DIAMOND = [
    {"key": "design", "title": "Design", "command": "true", "estimate_hours": 1},
    {"key": "api", "command": "true", "depends_on": ["design"], "estimate_hours": 3},
    {"key": "ui", "command": "true", "depends_on": ["design"], "estimate_hours": 1},
    {"key": "test", "command": "true", "estimate_hours": 0.5, "optional": True,
     "depends_on": ["api", {"key": "ui", "type": "start_to_start", "required": False}]},
]  # fmt: skip


def test_dag_has_nodes_edges_levels_and_critical_path(client, db):
    session_id = submit(client, DIAMOND)
    response = client.get(f"/api/v1/sessions/{session_id}/dag")
    assert response.status_code == 200
    body = response.json
    assert body["session_id"] == session_id and body["status"] == "queued"
    nodes = {node["key"]: node for node in body["nodes"]}
    assert list(nodes) == ["design", "api", "ui", "test"]
    assert all(node["status"] == "pending" for node in nodes.values())
    assert nodes["test"]["optional"] is True and nodes["api"]["level"] == 1
    assert {"from": "ui", "to": "test", "type": "start_to_start", "required": False} in body[
        "edges"
    ]
    assert len(body["edges"]) == 4
    assert body["levels"] == [["design"], ["api", "ui"], ["test"]]
    assert body["critical_path"] == ["design", "api", "test"]
    assert body["expected_makespan_hours"] == pytest.approx(4.5)
    assert nodes["api"]["on_critical_path"] and not nodes["ui"]["on_critical_path"]
    assert nodes["test"]["earliest_start_hours"] == pytest.approx(4.0)


def test_unestimated_tasks_count_one_hour(client, db):
    chain = [
        {"key": "a", "command": "true"},
        {"key": "b", "command": "true", "depends_on": ["a"]},
        {"key": "c", "command": "true", "depends_on": ["b"], "estimate_hours": 2},
    ]
    body = client.get(f"/api/v1/sessions/{submit(client, chain)}/dag").json
    assert body["critical_path"] == ["a", "b", "c"]
    assert body["expected_makespan_hours"] == pytest.approx(4.0)


def test_node_status_follows_the_tasks(client, db):
    session_id = submit(client, DIAMOND)
    task = db.query(SessionTask).filter_by(session_id=session_id, key="design").one()
    task.status = TaskStatus.COMPLETED
    db.commit()
    nodes = client.get(f"/api/v1/sessions/{session_id}/dag").json["nodes"]
    assert nodes[0]["status"] == "completed"
    dot = client.get(f"/api/v1/sessions/{session_id}/dag?format=dot").get_data(as_text=True)
    assert "Design [completed]" in dot


def test_dot_and_mermaid_are_plain_text(client, db):
    session_id = submit(client, DIAMOND)
    dot = client.get(f"/api/v1/sessions/{session_id}/dag?format=dot")
    assert dot.status_code == 200 and dot.mimetype == "text/plain"
    text = dot.get_data(as_text=True)
    assert text.startswith("digraph plan {") and '"design" -> "api";' in text
    assert '"ui" -> "test" [label="SS", style=dashed];' in text
    mermaid = client.get(f"/api/v1/sessions/{session_id}/dag?format=mermaid")
    assert mermaid.mimetype == "text/plain"
    lines = mermaid.get_data(as_text=True).splitlines()
    assert lines[0] == "graph TD" and "  t0 --> t1" in lines and "  t2 -.->|SS| t3" in lines


def test_unknown_format_is_422_and_unknown_session_404(client, db):
    session_id = submit(client, DIAMOND)
    bad = client.get(f"/api/v1/sessions/{session_id}/dag?format=svg")
    assert bad.status_code == 422 and "format" in bad.json["errors"]
    missing = client.get("/api/v1/sessions/nope/dag?format=dot")
    assert missing.status_code == 404 and "nope" in missing.json["message"]
