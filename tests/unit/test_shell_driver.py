"""The shell driver on real processes: exit codes, output tails, deadline and cancellation;
the command's minimal environment and, under root, its unprivileged user."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import app.sandbox as sandbox
from app.drivers.base import AgentSpec, DriverJob
from app.drivers.shell import ShellDriver
from app.workspaces import commit_all, create_worktree, ensure_repository, git
from tests.conftest import ROOT, wait_until


def job(command: str, tmp_path, timeout: float = 30.0) -> DriverJob:
    return DriverJob(session_id="s", task_id="t", task_key="k", attempt=1, title="t",
                     description="", agent=AgentSpec(id="a", name="a", driver="shell"),
                     workdir=str(tmp_path), timeout_seconds=timeout, command=command)  # fmt: skip


def test_success_keeps_the_last_line_as_summary(tmp_path):
    result = ShellDriver().run(job("echo one; echo two", tmp_path), threading.Event())
    assert result.succeeded and result.exit_code == 0 and result.summary == "two"


def test_a_non_zero_exit_fails_without_retry(tmp_path):
    result = ShellDriver().run(job("echo oops >&2; exit 3", tmp_path), threading.Event())
    assert not result.succeeded and not result.retryable
    assert result.exit_code == 3 and "oops" in result.stderr_tail


def test_the_deadline_stops_the_whole_process_group(tmp_path):
    marker, finished = tmp_path / "late", tmp_path / "finished"
    started = time.monotonic()
    command = f"(sleep 1; touch {marker}) & sleep 3; touch {finished}"
    result = ShellDriver().run(job(command, tmp_path, 0.3), threading.Event())
    assert not finished.exists(), "the driver waited for the command to end"
    assert not result.succeeded and result.retryable
    assert result.error == "Command timed out after 0.3s."
    time.sleep(max(0.0, started + 1.5 - time.monotonic()))  # past the child's 1 s
    assert not marker.exists(), "a child of the timed-out command kept running"


def test_cancel_stops_the_command_and_is_not_retried(tmp_path):
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    finished = tmp_path / "finished"
    result = ShellDriver().run(job(f"sleep 5; touch {finished}", tmp_path), cancel)
    assert not finished.exists(), "the driver waited for the command to end"
    assert not result.succeeded and not result.retryable
    assert result.error == "Command cancelled."


# --- The command's environment and user (app/sandbox.py) ---------------------------

WORKER_SECRETS = {
    "DATABASE_URL": "postgresql://orch:db-password-1@127.0.0.1:5432/orch",
    "REDIS_URL": "redis://:redis-password-2@127.0.0.1:6379/0",
    "CELERY_BROKER_URL": "redis://:broker-password-3@127.0.0.1:6379/1",
    "CELERY_RESULT_BACKEND": "redis://:backend-password-4@127.0.0.1:6379/2",
    "SECRET_KEY": "flask-secret-5",
    "FLOWER_BASIC_AUTH": "admin:flower-password-6",
    "ORCHESTRATOR_TOKEN": "orch_token-secret-7",
    "OPENCODE_SERVER_PASSWORD": "opencode-password-8",
    "AWS_SECRET_ACCESS_KEY": "cloud-secret-9",
    "http_proxy": "http://proxy-user:proxy-password-10@proxy:3128",
}
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="commands change user only under root")


def agent_job(command: str, workdir, config: dict) -> DriverJob:
    agent = AgentSpec(id="a", name="a", driver="shell", config=config)
    return DriverJob(session_id="s", task_id="t", task_key="k", attempt=2, title="t",
                     description="", agent=agent, workdir=str(workdir), timeout_seconds=30,
                     command=command)  # fmt: skip


def env_of(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def test_the_command_sees_none_of_the_worker_secrets_but_its_agent_env(tmp_path, monkeypatch):
    for name, value in {**WORKER_SECRETS, "LANG": "C.UTF-8", "LC_TIME": "C", "TZ": "UTC"}.items():
        monkeypatch.setenv(name, value)
    config = {"password": "opencode-basic-auth-11", "env": {"GREETING": "hello", "PATH": "/bin"}}
    result = ShellDriver().run(agent_job("env", tmp_path, config), threading.Event())
    assert result.succeeded, result.error
    for secret in [*WORKER_SECRETS.values(), "opencode-basic-auth-11"]:
        assert secret not in result.stdout_tail
    seen = env_of(result.stdout_tail)
    assert not set(WORKER_SECRETS) & set(seen)
    assert seen["GREETING"] == "hello" and seen["PATH"] == "/bin"  # the admin's env wins
    assert (seen["LANG"], seen["LC_TIME"], seen["TZ"]) == ("C.UTF-8", "C", "UTC")
    assert (seen["ORCH_SESSION_ID"], seen["ORCH_TASK_KEY"], seen["ORCH_ATTEMPT"]) == ("s", "k", "2")
    assert set(seen) <= {*sandbox.ENV_ALLOWED, "LC_TIME", "GREETING", "PWD", "SHLVL", "_",
                         "OLDPWD", "ORCH_SESSION_ID", "ORCH_TASK_ID", "ORCH_TASK_KEY",
                         "ORCH_ATTEMPT", "GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0",
                         "GIT_CONFIG_VALUE_0"}  # fmt: skip


def test_an_invalid_stored_agent_env_is_ignored_and_cannot_replace_the_task_variables(tmp_path):
    config = {"env": {"ORCH_TASK_KEY": "forged", "1BAD": "x"}}
    result = ShellDriver().run(agent_job("env", tmp_path, config), threading.Event())
    seen = env_of(result.stdout_tail)
    assert result.succeeded and seen["ORCH_TASK_KEY"] == "k" and "1BAD" not in seen


@as_root
def test_under_root_the_command_runs_unprivileged_and_writes_in_its_workdir(tmp_path):
    user = sandbox.command_user()
    command = "id -u; id -g; grep NoNewPrivs /proc/self/status; echo made > made.txt; env"
    result = ShellDriver().run(agent_job(command, tmp_path, {}), threading.Event())
    assert result.succeeded, result.stderr_tail
    uid, gid, no_new_privs = result.stdout_tail.splitlines()[:3]
    assert int(uid) == user.uid != 0 and int(gid) == user.gid != 0
    assert no_new_privs.split() == ["NoNewPrivs:", "1"]  # sudo and setuid binaries do not elevate
    assert (tmp_path / "made.txt").read_text() == "made\n"
    assert (tmp_path / "made.txt").stat().st_uid == user.uid
    seen = env_of(result.stdout_tail)
    assert (seen["HOME"], seen["USER"]) == (user.home, user.name)


@as_root
def test_a_workdir_the_command_user_cannot_write_fails_at_once(tmp_path):
    closed = tmp_path / "root-only"
    closed.mkdir(mode=0o755)  # root's, not writable by the command user
    marker = tmp_path / "ran"
    result = ShellDriver().run(job(f"touch {marker}", closed), threading.Event())
    assert not result.succeeded and not result.retryable
    name = sandbox.command_user().name
    assert result.error == f"The workdir {closed} is not writable by {name} (COMMAND_USER)."
    assert not marker.exists()


@as_root
def test_a_missing_workdir_is_made_only_where_the_command_user_may_write(tmp_path, monkeypatch):
    user = sandbox.command_user()
    root = tmp_path / "workspaces"
    monkeypatch.setenv("WORKSPACE_ROOT", str(root))
    session_dir = root / "session-1"  # WORKSPACE_ROOT is the orchestrator's: given to the user
    assert ShellDriver().run(job("echo a > a.txt", session_dir), threading.Event()).succeeded
    assert session_dir.stat().st_uid == user.uid and (session_dir / "a.txt").exists()
    nested = tmp_path / "new" / "deeper"  # below a directory of the user's: made as the user
    assert ShellDriver().run(job("echo b > b.txt", nested), threading.Event()).succeeded
    assert nested.stat().st_uid == (tmp_path / "new").stat().st_uid == user.uid
    closed = tmp_path / "root-only"
    closed.mkdir(mode=0o755)  # like /etc: root must not make a directory there for the user
    result = ShellDriver().run(job("true", closed / "profile.d"), threading.Event())
    assert not result.succeeded and "cannot be created" in result.error
    assert not (closed / "profile.d").exists()


@as_root
def test_a_command_user_that_is_missing_or_root_is_refused(tmp_path, monkeypatch):
    for name, reason in (("no-such-user-x", "names no user"), ("root", "is root")):
        monkeypatch.setenv("COMMAND_USER", name)
        result = ShellDriver().run(job(f"touch {tmp_path}/ran", tmp_path), threading.Event())
        assert not result.succeeded and reason in result.error
        assert f"COMMAND_USER={name}" in result.error
    assert not (tmp_path / "ran").exists()


def test_the_command_dies_with_its_worker(tmp_path):
    """The command, started as another user under root, still gets SIGKILL when the worker
    that started it dies (setpriv sets the parent-death signal after changing user)."""
    pidfile = tmp_path / "pid"
    code = ("import threading, sys; from tests.unit.test_shell_driver import job;"
            "from app.drivers.shell import ShellDriver;"
            f"command = job('echo $$ > {pidfile}; exec sleep 60', sys.argv[1]);"
            "ShellDriver().run(command, threading.Event())")  # fmt: skip
    worker = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT)
    try:
        pid = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 30))
        worker.kill()
        worker.wait()
        wait_until(lambda: not alive(pid), 10, message="the command to die with its worker")
    finally:
        worker.kill()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")  # a zombie is dead, only not yet reaped


@as_root
def test_a_worktree_is_writable_by_the_command_user_but_its_git_link_stays_roots(tmp_path):
    user = sandbox.command_user()
    repo = ensure_repository(tmp_path / "repo")
    (repo / "tracked.txt").write_text("v1\n")
    commit_all(repo, "tracked")
    tree = create_worktree(repo, "s1", "task")
    assert tree.stat().st_uid == 0 and tree.stat().st_gid == user.gid
    assert (tree / ".git").stat().st_uid == 0 and (tree / "tracked.txt").stat().st_uid == user.uid
    command = ("echo v2 > tracked.txt; echo new > new.txt; mkdir -p sub && echo s > sub/s.txt;"
               " git log --oneline -1; mv .git moved 2>/dev/null && echo MOVED; echo > .git")
    result = ShellDriver().run(job(command, tree), threading.Event())
    assert "tracked" in result.stdout_tail  # the command's git can read the repository
    assert "MOVED" not in result.stdout_tail  # nor could it point root's git elsewhere
    assert (tree / ".git").read_text().startswith("gitdir: ")
    made = commit_all(tree, "task work")  # root's git still trusts the worktree
    files = git(tree, "show", "--name-only", "--format=", made).stdout.split()
    assert sorted(files) == ["new.txt", "sub/s.txt", "tracked.txt"]


WORKER_PROBE = """
import importlib.util, os, subprocess, sys
spec = importlib.util.spec_from_file_location("sandbox", sys.argv[1])
sandbox = sys.modules["sandbox"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sandbox)
if sys.argv[2] == "hide":
    sandbox.hide_worker_from_commands()
peek = subprocess.run(["cat", f"/proc/{os.getpid()}/environ"], capture_output=True)
print("LEAKED" if b"WORKER_SECRET=s3" in peek.stdout else "HIDDEN")
"""


def test_a_non_root_worker_hides_its_environment_from_commands_of_its_own_user():
    """A command running as the worker's user could read /proc/<worker>/environ: the worker
    makes itself non-dumpable at start (tasks/worker.py), which closes that door."""
    python = sys.executable
    prefix: list[str] = []
    if os.geteuid() == 0:  # play a non-root worker: the command user, with the system python
        user = sandbox.command_user()
        prefix = ["setpriv", "--reuid", str(user.uid), "--regid", str(user.gid), "--clear-groups"]
        python = "/usr/bin/python3"
    module = str(ROOT / "app" / "sandbox.py")
    env = {"PATH": "/usr/bin:/bin", "WORKER_SECRET": "s3"}
    for mode, expected in (("show", "LEAKED"), ("hide", "HIDDEN")):
        probe = subprocess.run([*prefix, python, "-c", WORKER_PROBE, module, mode], env=env,
                               cwd="/", capture_output=True, text=True, timeout=60)  # fmt: skip
        assert probe.stdout.strip() == expected, probe.stderr
