"""The `orchestrator` CLI driven end to end against a running stack: gunicorn and a Celery worker
on the test services (their own Redis database), with tokens, metrics and JSON logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis as redis_lib
import requests
from prometheus_client.parser import text_string_to_metric_families

from app.standalone.servers import free_port
from tests.conftest import ROOT, WorkerProcess, wait_until

pytestmark = pytest.mark.e2e

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_AUTH = 0, 1, 2, 3, 4


class Stack:
    def __init__(self, url: str, env: dict, home: Path) -> None:
        self.url, self.env, self.home = url, env, home

    def cli(self, *args: str, token: str | None = None, database: bool = False, api=None):
        """Run `orchestrator …`; return (exit code, stdout, stderr)."""
        env = {key: value for key, value in self.env.items()
               if key not in ("ORCH_TOKEN", "DATABASE_URL")}  # fmt: skip
        if token:
            env["ORCH_TOKEN"] = token
        if database:
            env["DATABASE_URL"] = self.env["DATABASE_URL"]
        result = subprocess.run(
            [sys.executable, "-m", "app.cli", "--api", api or self.url, *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        return result.returncode, result.stdout, result.stderr


@pytest.fixture(scope="module")
def stack(app, database_url, redis_url, services_root):
    # Not under pytest's private (0700) tmp: a root worker's commands run as COMMAND_USER.
    home = services_root / "cli-stack"
    home.mkdir()
    (home / "metrics").mkdir()
    broker = redis_url.rsplit("/", 1)[0] + "/14"  # apart from the shared test worker's queues
    redis_lib.Redis.from_url(broker).flushdb()
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": broker,
           "WORKSPACE_ROOT": str(home / "work"), "LOG_FORMAT": "json",
           "PROMETHEUS_MULTIPROC_DIR": str(home / "metrics")}  # fmt: skip
    env.pop("ORCH_TOKEN", None)
    port = free_port()
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    command = [gunicorn, "--worker-class", "gevent", "--workers", "2",  # as the Procfile
               "--bind", f"127.0.0.1:{port}"]  # fmt: skip
    log = open(home / "web.log", "ab")
    web = subprocess.Popen([*command, "wsgi:app"], cwd=ROOT, env=env, stdout=log, stderr=log)
    worker = WorkerProcess(env, home / "worker.log", concurrency=4)
    worker.start()
    url = f"http://127.0.0.1:{port}"

    def ready():
        try:
            return requests.get(f"{url}/health/ready", timeout=2).ok
        except requests.RequestException:
            return False

    wait_until(ready, 60, message="gunicorn ready")
    yield Stack(url, env, home)
    worker.stop()
    web.terminate()
    web.wait(20)


def write(path: Path, body: dict) -> str:
    path.write_text(json.dumps(body))
    return str(path)


def session_file(tmp_path: Path, name: str, *tasks: dict) -> str:
    return write(
        tmp_path / f"{name}.json", {"title": name, "prompt": "p", "dag": {"tasks": list(tasks)}}
    )


def test_tokens_agents_sessions_and_exit_codes(stack, db, tmp_path):
    code, out, err = stack.cli("tokens", "create", "cli-admin", "--scope", "admin")
    assert code == EXIT_USAGE and "DATABASE_URL" in err
    code, admin, _ = stack.cli("tokens", "create", "cli-admin", "--scope", "admin", database=True)
    assert code == EXIT_OK
    admin = admin.strip()
    code, reader, _ = stack.cli("tokens", "create", "cli-reader", "--scope", "read", database=True)
    reader = reader.strip()
    code, listed, _ = stack.cli("tokens", "list", database=True)
    assert code == EXIT_OK and "cli-admin" in listed and "cli-reader" in listed
    assert admin not in listed and reader not in listed

    # Agents: from flags and from a JSON file; auth failures are exit code 4.
    flags = ["agents", "register", "--name", "cli-runner", "--type", "implementer", "--driver",
             "shell", "--capability", "code_generation", "--capacity", "4"]  # fmt: skip
    assert stack.cli(*flags)[0] == EXIT_AUTH
    assert stack.cli(*flags, token=reader)[0] == EXIT_AUTH
    assert stack.cli(*flags, token="orch_" + "x" * 43)[0] == EXIT_AUTH
    assert stack.cli(*flags, token=admin)[0] == EXIT_OK
    tester = {"name": "cli-tester", "type": "reviewer", "driver": "shell",
              "capabilities": ["test_generation"]}  # fmt: skip
    agent_file = write(tmp_path / "agent.json", tester)
    assert stack.cli("agents", "register", "--file", agent_file, token=admin)[0] == EXIT_OK
    code, agents, _ = stack.cli("agents", "list", token=reader)
    assert code == EXIT_OK and "cli-runner" in agents and "cli-tester" in agents

    # Submit and watch: 0 when the session completes, 1 when it fails.
    good = session_file(tmp_path, "good", {"key": "build", "command": "echo built"},
                        {"key": "test", "command": "true", "depends_on": ["build"],
                         "required_capabilities": ["test_generation"]})  # fmt: skip
    code, out, err = stack.cli("submit", good, "--watch", token=admin)
    assert code == EXIT_OK, err
    good_id = out.splitlines()[0]
    assert "COMPLETED" in out and "build" in out and "[##########]" in out
    marker = tmp_path / "second-time"
    once = f"test -f {marker} || {{ touch {marker}; exit 3; }}"
    flaky = session_file(tmp_path, "flaky", {"key": "once", "max_attempts": 1, "command": once})
    code, out, _ = stack.cli("submit", flaky, "--watch", token=admin)
    flaky_id = out.splitlines()[0]
    assert code == EXIT_FAILED and "FAILED" in out

    # List, retry (resumes and now succeeds), cancel.
    code, out, _ = stack.cli("list", "--status", "completed", token=reader)
    assert code == EXIT_OK and good_id in out and flaky_id not in out
    assert flaky_id in stack.cli("list", "--status", "failed", token=reader)[1]
    code, out, err = stack.cli("retry", flaky_id, "--watch", token=admin)
    assert code == EXIT_OK, err
    slow = session_file(tmp_path, "slow", {"key": "nap", "command": "sleep 30"})
    slow_id = stack.cli("submit", slow, token=admin)[1].strip()
    code, out, _ = stack.cli("cancel", slow_id, token=admin)
    assert code == EXIT_OK and "cancelled" in out
    assert stack.cli("watch", slow_id, token=reader)[0] == EXIT_FAILED
    assert stack.cli("cancel", slow_id, token=admin)[0] == EXIT_USAGE  # 409: already cancelled

    # Bad input is 2, an unreachable API 3, a revoked token 4.
    (tmp_path / "broken.json").write_text("{not json")
    assert stack.cli("submit", str(tmp_path / "broken.json"), token=admin)[0] == EXIT_USAGE
    unknown = session_file(
        tmp_path, "unknown", {"key": "x", "required_capabilities": ["debugging"]}
    )
    code, _, err = stack.cli("submit", unknown, token=admin)
    assert code == EXIT_USAGE and "debugging" in err
    assert stack.cli("list", token=admin, api="http://127.0.0.1:1")[0] == EXIT_UNAVAILABLE
    reader_id = next(line.split()[0] for line in listed.splitlines() if "cli-reader" in line)
    assert stack.cli("tokens", "revoke", reader_id, database=True)[0] == EXIT_OK
    code, _, err = stack.cli("list", token=reader)
    assert code == EXIT_AUTH and "revoked" in err


def test_worker_metrics_and_json_logs_reach_the_operator(stack, db, tmp_path):
    admin = stack.cli("tokens", "create", "metrics", "--scope", "admin", database=True)[1].strip()
    stack.cli("agents", "register", "--name", "m-runner", "--type", "implementer", "--driver",
              "shell", "--capability", "code_generation", token=admin)  # fmt: skip
    done = session_file(tmp_path, "done", {"key": "a", "command": "true"})
    assert stack.cli("submit", done, "--watch", token=admin)[0] == EXIT_OK
    headers = {"Authorization": f"Bearer {admin}"}
    assert requests.get(f"{stack.url}/metrics", timeout=10).status_code == 401
    text = requests.get(f"{stack.url}/metrics", headers=headers, timeout=10).text
    values = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    # Counted by the worker process, read by gunicorn through the multiprocess directory.
    key = ("orchestrator_celery_tasks_total", (("state", "success"), ("task", "sessions.run_task")))
    assert values.get(key, 0) >= 1
    assert values[("orchestrator_sessions", (("status", "completed"),))] == 1
    route = (("method", "GET"), ("route", "/api/v1/sessions/<session_id>"), ("status", "200"))
    assert values[("orchestrator_http_request_duration_seconds_count", route)] >= 1

    lines = [json.loads(line) for line in (stack.home / "worker.log").read_text().splitlines()
             if line.startswith("{")]  # fmt: skip
    assert lines and {"ts", "level", "logger", "message"} <= set(lines[0])
    assert any("session_id" in line and "task_id" in line for line in lines)
    assert not any("orch_" in line["message"] for line in lines)
