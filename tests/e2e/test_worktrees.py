"""Tasks of a session whose workdir is a git repository work in their own worktrees and
branches; an integration step merges them in dependency order, or lists the conflicts."""

import subprocess

import pytest

from app.workspaces import ensure_repository
from tests.conftest import wait_until

pytestmark = pytest.mark.e2e

AGENT = {"name": "git-runner", "type": "implementer", "capabilities": ["code_generation"],
         "driver": "shell", "capacity": 4}  # fmt: skip


@pytest.fixture
def repo(tmp_path):
    path = ensure_repository(tmp_path / "repo")
    (path / "README.md").write_text("demo\n")
    subprocess.run(["git", "add", "-A"], cwd=path, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "readme"],
                   cwd=path, check=True)  # fmt: skip
    return path


def run(client, repo, tasks):
    client.post("/api/v1/agents", json=AGENT)
    body = {"title": "git", "prompt": "p", "workdir": str(repo), "dag": {"tasks": tasks}}
    session_id = client.post("/api/v1/sessions", json=body).json["id"]
    return wait_until(
        lambda: (s := client.get(f"/api/v1/sessions/{session_id}").json)["status"]
        in ("completed", "failed") and s, 60, interval=0.1)  # fmt: skip


def show(repo, ref, path):
    return subprocess.run(["git", "show", f"{ref}:{path}"], cwd=repo, capture_output=True,
                          text=True).stdout  # fmt: skip


def test_parallel_tasks_in_worktrees_are_merged_in_order(client, db, worker, repo):
    tasks = [
        {"key": "api", "command": "echo 'def api(): ...' > api.py"},
        {"key": "ui", "command": "echo '<h1>ui</h1>' > ui.html"},
        {"key": "docs", "command": "echo '# API and UI' >> README.md", "depends_on": ["api"]},
        {"key": "merge", "action": "integrate", "depends_on": ["docs", "ui"]},
    ]
    session = run(client, repo, tasks)
    by_key = {t["key"]: t for t in session["tasks"]}
    assert session["status"] == "completed", by_key["merge"]
    assert by_key["api"]["branch"] == f"orch/{session['id']}/api"
    target = f"orch/{session['id']}/integration"
    assert "def api" in show(repo, target, "api.py")
    assert "<h1>ui</h1>" in show(repo, target, "ui.html")
    assert "API and UI" in show(repo, target, "README.md")
    assert "Merged 3 branches" in by_key["merge"]["result"]["summary"]
    assert not (repo / "api.py").exists(), "a task wrote into the repository's own checkout"


def test_conflicting_branches_fail_the_integration_listing_the_files(client, db, worker, repo):
    tasks = [
        {"key": "one", "command": "echo one > README.md"},
        {"key": "two", "command": "echo two > README.md"},
        {"key": "merge", "action": "integrate", "depends_on": ["one", "two"]},
    ]
    session = run(client, repo, tasks)
    merge = {t["key"]: t for t in session["tasks"]}["merge"]
    assert session["status"] == "failed"
    assert "README.md" in merge["error"]
    assert merge["result"]["files_changed"] == ["README.md"]
