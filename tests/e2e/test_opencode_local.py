"""An agent whose endpoint is `local` runs on the real `opencode serve` beside the worker
(WORKER_OPENCODE_URL), in a worktree of the worker's mirror of the session's repository."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from app.drivers.base import AgentSpec, DriverJob
from app.drivers.opencode import OpenCodeDriver
from app.drivers.opencode_client import BreakerRegistry
from app.drivers.opencode_server import (
    OpenCodeServer,
    OpenCodeServerError,
    install_opencode,
    scripted_provider_config,
)
from app.standalone.scripted_model import ScriptedModelServer
from app.workspaces import branch_name, commit_all, create_remote_worktree, git, push_branch

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def opencode(tmp_path_factory):
    try:
        binary = install_opencode()
    except OpenCodeServerError as exc:
        pytest.skip(f"opencode cannot be installed here: {exc}")
    with ScriptedModelServer() as model:
        server = OpenCodeServer(
            binary, tmp_path_factory.mktemp("opencode-local"),
            config=scripted_provider_config(model.base_url),
            extra_env={"npm_config_offline": "true"}, die_with_parent=True,
        )  # fmt: skip
        server.start(timeout=60)
        try:
            yield server
        finally:
            server.stop()


def test_a_local_agent_edits_a_worktree_of_the_mirror_and_its_branch_is_pushed(
    opencode, tmp_path: Path, monkeypatch
) -> None:
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    seed = tmp_path / "seed"
    git(tmp_path, "clone", "-q", str(bare), str(seed))
    (seed / "alpha.txt").write_text("value = 0\n")
    commit_all(seed, "seed")
    git(seed, "push", "-q", "origin", "HEAD:main")
    worktree = create_remote_worktree(f"file://{bare}", tmp_path / "host", "ses-local", "alpha")
    monkeypatch.setenv("WORKER_OPENCODE_URL", opencode.url)
    agent = AgentSpec(id="agent-local", name="oc-local", driver="opencode", endpoint="local",
                      model="fake/scripted")  # fmt: skip
    edit = "EDIT_FILE:alpha.txt:value = 0:value = 7"
    job = DriverJob(session_id="ses-local", task_id="task-alpha", task_key="alpha", attempt=1,
                    title="local alpha", description="", agent=agent, workdir=str(worktree),
                    timeout_seconds=60, prompt=edit)  # fmt: skip
    driver = OpenCodeDriver(breakers=BreakerRegistry(threshold=3, cooldown=30))
    result = driver.run(job, threading.Event())
    assert result.succeeded, result.error
    assert result.files_changed == ["alpha.txt"]
    commit_all(worktree, "alpha")
    push_branch(worktree, branch_name("ses-local", "alpha"))
    shown = git(bare, "show", f"{branch_name('ses-local', 'alpha')}:alpha.txt").stdout
    assert shown == "value = 7\n"
