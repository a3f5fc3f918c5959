"""Scheduling under scarce agents, on `make run`'s stack with its defaults (without OpenCode).

The standalone stack (embedded PostgreSQL and Valkey, API, worker, beat, Flower) runs three
scenarios of `shell` tasks that sleep, each on an agent of its own (tasks pin it by capability):
- one agent with one slot; 12 `deferred` one-task sessions of 1 s, then one `critical`:
  `critical_start_wait_s` (its submission to its start; target <= 1.5 x one task) and
  `deferred_started_after_critical` (target >= 10 of 12);
- 100 sessions submitted at once, each a chain of three 0.5 s tasks, on an agent of capacity 64:
  `first_task_start_p95_s` (the session's creation to its first task running; target < 2) and
  `stack_rss_mb`, the peak resident memory of every process of the stack while they run, each
  shared page counted once: the sum of the processes' PSS, which is exactly the physical memory
  they hold together (target < 1000); also the plain sum of RSS (`stack_rss_sum_mb`, which
  counts every shared page - PostgreSQL's shared buffers, the Python libraries - once per
  process) and the sum of RSS with only the shared memory segments counted once
  (`stack_rss_shmem_once_mb`);
- a 12-wide fan-out (0.5 s, then 12 x 1 s, then 0.5 s) on an agent of capacity 16:
  `fanout12_efficiency_cap16` = critical path / makespan (target >= 0.9).
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import statistics
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import requests
from _harness import ROOT  # noqa: F401 - puts the repository on sys.path
from sqlalchemy import create_engine, text

from app.standalone.stack import Stack, issue_standalone_token

FINISHED = ("completed", "failed", "partially_completed")
CLIENTS = 10  # API clients submitting the 100 sessions


class Bench:
    def __init__(self, stack: Stack, token: str):
        self.api = stack.api_url
        self.headers = {"Authorization": f"Bearer {token}"}
        self.engine = create_engine(stack.env["DATABASE_URL"])

    def agent(self, capability: str, capacity: int) -> None:
        body = {"name": f"bench-{capability}", "type": "implementer", "driver": "shell",
                "capabilities": [capability], "capacity": capacity}  # fmt: skip
        requests.post(f"{self.api}/api/v1/agents", json=body, headers=self.headers,
                      timeout=30).raise_for_status()  # fmt: skip

    def submit(self, capability: str, tasks: dict, priority: str = "medium") -> str:
        specs = [{"key": key, "command": f"sleep {seconds}", "depends_on": deps,
                  "required_capabilities": [capability]}
                 for key, (seconds, deps) in tasks.items()]  # fmt: skip
        body = {"title": "scheduling", "prompt": "bench", "priority": priority,
                "dag": {"tasks": specs}}  # fmt: skip
        response = requests.post(f"{self.api}/api/v1/sessions", json=body, headers=self.headers,
                                 timeout=60)  # fmt: skip
        response.raise_for_status()
        return response.json()["id"]

    def wait(self, session_ids: list[str], timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        query = text("SELECT count(*) FROM sessions WHERE id = ANY(:ids) AND status = ANY(:done)")
        params = {"ids": session_ids, "done": list(FINISHED)}
        while time.monotonic() < deadline:
            with self.engine.connect() as connection:
                if connection.execute(query, params).scalar_one() == len(session_ids):
                    return
            time.sleep(0.25)
        raise TimeoutError("sessions did not finish")

    def tasks(self, session_ids: list[str]) -> list:
        """(session id, key, session created_at, task started_at, finished_at, status) rows."""
        query = text(
            "SELECT t.session_id, t.key, s.created_at, t.started_at, t.finished_at, t.status"
            " FROM session_tasks t JOIN sessions s ON s.id = t.session_id"
            " WHERE t.session_id = ANY(:ids)"
        )
        with self.engine.connect() as connection:
            return connection.execute(query, {"ids": session_ids}).all()


def priority_scenario(bench: Bench) -> dict:
    bench.agent("code_review", 1)
    bench.wait([bench.submit("code_review", {"warm": (0.1, [])})])
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        deferred = list(pool.map(lambda _: bench.submit("code_review", {"t": (1, [])},
                                                        "deferred"), range(12)))  # fmt: skip
    critical = bench.submit("code_review", {"t": (1, [])}, "critical")
    bench.wait([*deferred, critical], timeout=120)
    rows = {row.session_id: row for row in bench.tasks([*deferred, critical])}
    assert all(row.status == "completed" for row in rows.values())
    started = rows[critical].started_at
    freed = max(r.finished_at for r in rows.values() if r.finished_at <= started)
    return {
        "critical_start_wait_s": round((started - rows[critical].created_at).total_seconds(), 3),
        "deferred_started_after_critical": sum(rows[d].started_at > started for d in deferred),
        # From the end of the task holding the slot to the critical task's start.
        "critical_start_after_slot_freed_s": round((started - freed).total_seconds(), 3),
    }


def stack_processes(stack: Stack) -> list[psutil.Process]:
    roots = [psutil.Process(child.pid) for child in stack.children.values() if child]
    for server in stack.embedded:
        pid_file = getattr(server, "data", Path("/nonexistent")) / "postmaster.pid"
        if pid_file.exists():
            roots.append(psutil.Process(int(pid_file.read_text().split()[0])))
        elif getattr(server, "process", None) is not None:
            roots.append(psutil.Process(server.process.pid))
    found = {}
    for root in roots:
        with contextlib.suppress(psutil.Error):
            for process in [root, *root.children(recursive=True)]:
                found[process.pid] = process
    return list(found.values())


def memory_mb(processes: list[psutil.Process]) -> dict[str, float]:
    """Resident memory of the processes in MiB: `rss` counts the shared memory segments (the
    shared buffers every PostgreSQL backend maps) once, not once per process; `raw` is the
    plain sum of RSS; `pss` shares every shared page among the processes mapping it."""
    anon_file = raw = pss = shmem = 0
    for process in processes:
        with contextlib.suppress(psutil.Error, OSError):
            status = Path(f"/proc/{process.pid}/status").read_text().split("\n")
            fields = {
                line.split(":")[0]: int(line.split()[1]) * 1024
                for line in status
                if line.startswith(("RssAnon", "RssFile", "RssShmem"))
            }
            anon_file += fields.get("RssAnon", 0) + fields.get("RssFile", 0)
            shmem = max(shmem, fields.get("RssShmem", 0))
            info = process.memory_full_info()
            raw, pss = raw + info.rss, pss + info.pss
    return {"rss": (anon_file + shmem) / 2**20, "raw": raw / 2**20, "pss": pss / 2**20}


def crowd_scenario(bench: Bench, stack: Stack) -> dict:
    bench.agent("test_generation", 64)
    chain = {"a": (0.5, []), "b": (0.5, ["a"]), "c": (0.5, ["b"])}
    peak, done = {"rss": 0.0, "raw": 0.0, "pss": 0.0}, threading.Event()

    def sample():
        while not done.wait(0.5):
            for name, value in memory_mb(stack_processes(stack)).items():
                peak[name] = max(peak[name], value)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        ids = list(pool.map(lambda _: bench.submit("test_generation", chain), range(100)))
    bench.wait(ids, timeout=300)
    done.set()
    sampler.join()
    rows = bench.tasks(ids)
    assert all(row.status == "completed" for row in rows)
    waits = sorted((r.started_at - r.created_at).total_seconds() for r in rows if r.key == "a")
    return {
        "first_task_start_p50_s": round(statistics.median(waits), 3),
        "first_task_start_p95_s": round(waits[int(0.95 * len(waits)) - 1], 3),
        "stack_rss_mb": round(peak["pss"], 1),
        "stack_rss_sum_mb": round(peak["raw"], 1),
        "stack_rss_shmem_once_mb": round(peak["rss"], 1),
    }


def fanout_scenario(bench: Bench) -> dict:
    bench.agent("documentation", 16)
    tasks = {"src": (0.5, [])}
    tasks.update({f"f{i}": (1.0, ["src"]) for i in range(12)})
    tasks["sink"] = (0.5, [f"f{i}" for i in range(12)])
    session_id = bench.submit("documentation", tasks)
    bench.wait([session_id])
    rows = bench.tasks([session_id])
    assert all(row.status == "completed" for row in rows)
    makespan = (max(r.finished_at for r in rows) - min(r.started_at for r in rows)).total_seconds()
    return {"fanout12_efficiency_cap16": round(2.0 / makespan, 3)}


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="orch-bench-scheduling-"))
    home.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.setdefault("SECRET_KEY", secrets.token_hex(32))  # every process of the stack signs alike
    stack = Stack(home=home, api_port=5000 + uuid.uuid4().int % 1000, env=env)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # only `name: value` lines are printed
            stack.start_services()
            stack.migrate()
            token = issue_standalone_token(stack.env["DATABASE_URL"], home / "admin-token")
            stack.start_processes()
        bench = Bench(stack, token)
        results = {"worker_concurrency": stack.worker_concurrency}
        results.update(priority_scenario(bench))
        results.update(crowd_scenario(bench, stack))
        results.update(fanout_scenario(bench))
    finally:
        stack.stop()
    for name, value in results.items():
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()
