"""Many hosts: tasks of a session that names a `repository` work in worktrees of their
worker's own mirror and push their branches; the integration step merges what several hosts
pushed. The netns test runs three worker hosts, each in its own network namespace with its own
WORKSPACE_ROOT, against a repository served by `git daemon`, and loses one of them mid-run."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from tests.conftest import wait_until

pytestmark = pytest.mark.e2e

AGENT = {"name": "repo-runner", "type": "implementer", "capabilities": ["code_generation"],
         "driver": "shell", "capacity": 4}  # fmt: skip


def _bare_remote(tmp_path) -> str:
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    seed = tmp_path / "seed"
    subprocess.run(["git", "clone", "-q", str(bare), str(seed)], check=True, capture_output=True)
    (seed / "README.md").write_text("demo\n")
    for command in (["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm",
                    "readme"], ["push", "-q", "origin", "HEAD:main"]):  # fmt: skip
        subprocess.run(["git", *command], cwd=seed, check=True, capture_output=True)
    return f"file://{bare}"


def _show(url: str, ref: str, path: str) -> str:
    bare = url.removeprefix("file://")
    return subprocess.run(["git", "--git-dir", bare, "show", f"{ref}:{path}"],
                          capture_output=True, text=True).stdout  # fmt: skip


def test_a_repository_session_pushes_task_branches_and_the_merge(client, db, worker, tmp_path):
    url = _bare_remote(tmp_path)
    client.post("/api/v1/agents", json=AGENT)
    tasks = [
        {"key": "api", "command": "echo 'def api(): ...' > api.py"},
        {"key": "ui", "command": "echo '<h1>ui</h1>' > ui.html"},
        {"key": "merge", "action": "integrate", "depends_on": ["api", "ui"]},
        {"key": "docs", "command": "ls *.py *.html > FILES", "depends_on": ["merge"]},
    ]
    body = {"title": "remote", "prompt": "p", "repository": {"url": url}, "dag": {"tasks": tasks}}
    created = client.post("/api/v1/sessions", json=body)
    assert created.status_code == 201, created.json
    session_id = created.json["id"]
    session = wait_until(
        lambda: (s := client.get(f"/api/v1/sessions/{session_id}").json)["status"]
        in ("completed", "failed") and s, 90, interval=0.2)  # fmt: skip
    by_key = {task["key"]: task for task in session["tasks"]}
    assert session["status"] == "completed", by_key
    integration = f"orch/{session_id}/integration"
    assert "def api" in _show(url, integration, "api.py")
    assert "<h1>ui</h1>" in _show(url, integration, "ui.html")
    # The task after the integration step started from the pushed integration branch.
    assert _show(url, by_key["docs"]["branch"], "FILES").split() == ["api.py", "ui.html"]
    assert by_key["api"]["branch"] == f"orch/{session_id}/api"


# -- three worker hosts in their own network namespaces -------------------------------------
@pytest.fixture(scope="module")
def lab(services_root):
    from tests.hosts_lab import HostsLab, netns_problem, register_shell_agent

    problem = netns_problem()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the many-hosts test: {problem}")
        pytest.skip(problem)
    with HostsLab(services_root / f"hosts-{uuid.uuid4().hex[:6]}", hosts=3) as lab:
        register_shell_agent(lab, capacity=24)
        yield lab


def _check_integration(lab, session) -> None:
    """Every task's pushed commit is in the integration branch, which holds every file."""
    integration = f"orch/{session['id']}/integration"
    files = set(lab.git("ls-tree", "--name-only", integration).split())
    for task in session["tasks"]:
        if task["key"] == "merge":
            continue
        assert f"{task['key']}.txt" in files, (task["key"], files)
        head = lab.git("rev-parse", task["branch"]).strip()
        assert lab.is_ancestor(head, integration), task["key"]


def test_parallel_tasks_on_three_hosts_are_merged_into_one_branch(lab):
    from tests.hosts_lab import wide_dag

    session_id = lab.submit("cross-host", wide_dag(6, 1.5))
    session = lab.wait_finished(session_id, timeout=120)
    by_key = {task["key"]: task for task in session["tasks"]}
    assert session["status"] == "completed", {
        k: (t["status"], t["error"]) for k, t in by_key.items()
    }
    hosts = {lab.host_of(task["worker"]) for key, task in by_key.items() if key != "merge"}
    assert len(hosts - {None}) >= 2, f"the tasks all ran on one host: {hosts}"
    _check_integration(lab, session)
    assert set(lab.completions(session_id).values()) == {1}


def test_a_host_lost_mid_run_loses_no_completed_task_and_completes_none_twice(lab):
    from tests.hosts_lab import wide_dag

    session_id = lab.submit("host-loss", wide_dag(6, 4))

    def running_on_a_host():
        tasks = lab.call("GET", f"/sessions/{session_id}").json()["tasks"]
        busy = [lab.host_of(t["worker"]) for t in tasks if t["status"] == "in_progress"]
        return next((host for host in busy if host is not None), None) is not None and busy

    busy = wait_until(running_on_a_host, 60, message="a task in progress on some host")
    victim = next(host for host in busy if host is not None)
    victim_pid = f":{lab.workers[victim].pid}"
    lab.kill_host(victim)  # its processes SIGKILLed, its disk gone
    before = lab.call("GET", f"/sessions/{session_id}").json()["tasks"]
    done_before = {task["key"] for task in before if task["status"] == "completed"}
    try:
        session = lab.wait_finished(session_id, timeout=150)
        by_key = {task["key"]: task for task in session["tasks"]}
        assert session["status"] == "completed", {
            k: (t["status"], t["error"], t["executions"]) for k, t in by_key.items()
        }
        assert set(lab.completions(session_id).values()) == {1}, lab.completions(session_id)
        assert any(task["executions"] > 1 for task in session["tasks"]), "nothing was rerun"
        assert not any(task["worker"].endswith(victim_pid) for task in session["tasks"])
        # What had completed before the loss (its branch pushed) stays done: never rerun.
        assert all(by_key[key]["executions"] == 1 for key in done_before)
        _check_integration(lab, session)
    finally:
        lab.start_worker(victim)  # the host comes back (a new disk) for any later test
