"""Budgets and approval gates: how far a token budget overshoots, how fast an approval runs.

- `budget_overshoot_tokens`: 20 sessions of one OpenCode task (a real `opencode serve` on the
  scripted model, a real worker) whose six model steps spend more than the session's
  `max_tokens` (a limit that falls at a different point of a step each run); the overshoot is
  what the session spent beyond the limit once it paused and the attempt ended. The bound is
  one model step, so the largest step the model served (`model_step_tokens_max`) is printed
  next to it; `budget_unused_tokens_p50` is what was left when the engine stopped before a
  step that would have passed the limit.
- `approval_to_running_ms`: 20 gated shell tasks; from the decision (the approval's
  `decided_at`) to the task's start (`started_at`), both PostgreSQL's clock.

Run: `.venv/bin/python bench/approvals.py [--runs 20]`; prints `name: value` lines.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Processes, auth_headers, services  # noqa: E402

from app.drivers.opencode_server import (  # noqa: E402
    OpenCodeServer,
    install_opencode,
    scripted_provider_config,
)
from app.standalone.scripted_model import ScriptedModelServer  # noqa: E402

STEPS = 6


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest-rank."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, -(-len(ordered) * q // 100) - 1))]


def call(api: str, method: str, path: str, **kwargs) -> dict:
    response = requests.request(method, api + path, headers=auth_headers(), timeout=120, **kwargs)
    if response.status_code >= 400:
        raise SystemExit(f"{method} {path}: {response.status_code} {response.text[:500]}")
    return response.json()


def wait_for(api: str, session_id: str, statuses: tuple[str, ...], timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = call(api, "GET", f"/api/v1/sessions/{session_id}")
        if body["status"] in statuses:
            return body
        time.sleep(0.05)
    raise SystemExit(f"session {session_id} did not reach {statuses} in {timeout}s")


def pending(api: str, session_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = call(api, "GET", f"/api/v1/sessions/{session_id}/approvals",
                     params={"status": "pending"})["items"]  # fmt: skip
        if items:
            return items[0]
        time.sleep(0.02)
    raise SystemExit(f"no approval of session {session_id} in {timeout}s")


def submit(api: str, tasks: list[dict], **body) -> str:
    return call(
        api,
        "POST",
        "/api/v1/sessions",
        json={"title": "bench", "prompt": "bench", "dag": {"tasks": tasks}, **body},
    )["id"]


def approval_to_running(api: str, runs: int) -> list[float]:
    """Milliseconds from each gate's decision to its task's start."""
    call(api, "POST", "/api/v1/agents", json={
        "name": "bench-shell", "type": "implementer", "driver": "shell",
        "capabilities": ["code_generation"], "capacity": 4,
    })  # fmt: skip
    figures = []
    for _ in range(runs):
        task = {"key": "gated", "command": "true", "requires_approval": True}
        session_id = submit(api, [task])
        approval = pending(api, session_id)
        decided = call(api, "POST", f"/api/v1/approvals/{approval['id']}",
                       json={"decision": "approve"})  # fmt: skip
        body = wait_for(api, session_id, ("completed", "failed"))
        started = datetime.fromisoformat(body["tasks"][0]["started_at"])
        figures.append((started - datetime.fromisoformat(decided["decided_at"])).total_seconds()
                       * 1000)  # fmt: skip
    return figures


def overshoots(api: str, home: Path, model: ScriptedModelServer, runs: int) -> list[int]:
    """Tokens each budgeted session spent beyond its max_tokens when it paused."""
    script = "\n".join(f"WRITE_FILE:step{i}.txt:step {i}" for i in range(1, STEPS + 1))
    task = {"key": "write", "title": "write", "description": script}

    def workdir() -> str:
        path = home / "work" / uuid.uuid4().hex[:8]
        path.mkdir(parents=True)
        return str(path)

    free = wait_for(api, submit(api, [task], workdir=workdir()), ("completed", "failed"))
    if free["status"] != "completed":
        raise SystemExit(f"the unbudgeted run failed: {free['tasks'][0]['error']}")
    whole = free["metrics"]["spent"]["tokens"]
    print(f"task_tokens_without_budget: {whole}")
    figures = []
    for run in range(runs):
        limit = int(whole * (0.15 + 0.6 * run / max(1, runs - 1)))
        session_id = submit(api, [task], workdir=workdir(), budget={"max_tokens": limit})
        body = wait_for(api, session_id, ("paused", "completed", "failed"))
        if body["status"] != "paused":
            raise SystemExit(f"run {run} did not pause: {body['status']}")
        time.sleep(0.5)  # the interrupted attempt's outcome adds what the aborted step spent
        spent = call(api, "GET", f"/api/v1/sessions/{session_id}")["metrics"]["spent"]["tokens"]
        figures.append(spent - limit)
        call(api, "POST", f"/api/v1/sessions/{session_id}/cancel")
    return figures


def main() -> None:
    """Run both parts and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    binary = install_opencode()
    with services() as (database_url, redis_url, home), ScriptedModelServer() as model:
        env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
               "WORKSPACE_ROOT": str(home / "work"), "TASK_HEARTBEAT_SECONDS": "1",
               "TASK_LEASE_SECONDS": "10"}  # fmt: skip
        processes = Processes(env, home)
        state = Path(tempfile.mkdtemp(prefix="opencode-state-", dir=home))
        server = OpenCodeServer(
            binary,
            state,
            config=scripted_provider_config(model.base_url),
            extra_env={"npm_config_offline": "true"},
            die_with_parent=True,
        )
        try:
            server.start(timeout=60)
            processes.worker("tasks.worker", concurrency=4)
            api = processes.api()
            waits = approval_to_running(api, args.runs)
            print(f"approval_to_running_ms_p50: {statistics.median(waits):.1f}")
            print(f"approval_to_running_ms_max: {max(waits):.1f}")
            call(api, "POST", "/api/v1/agents", json={
                "name": "bench-oc", "type": "implementer", "capabilities": ["code_generation"],
                "driver": "opencode", "endpoint": server.url, "model": "fake/scripted",
                "capacity": 2,
            })  # fmt: skip
            over = overshoots(api, home, model, args.runs)
            steps = model.state.snapshot()["usage"]
            beyond = [max(0, tokens) for tokens in over]
            unused = [max(0, -tokens) for tokens in over]
            print(f"budget_overshoot_tokens_p95: {percentile(beyond, 95)}")
            print(f"budget_overshoot_tokens_max: {max(beyond)}")
            print(f"budget_unused_tokens_p50: {statistics.median(unused):.0f}")
            print(f"model_step_tokens_p50: {statistics.median(steps):.0f}")
            print(f"model_step_tokens_max: {max(steps)}")
        finally:
            processes.stop()
            server.stop()


if __name__ == "__main__":
    main()
