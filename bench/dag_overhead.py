"""Per-task cost of running a layered DAG through the orchestrator versus raw Celery chords.

A 100-task DAG (10 layers of 10, every task of a layer depending on every task of the layer
before) of `shell` tasks running `true`, against the same shape as a chain of Celery groups
(chords) of no-op tasks on the same broker, each with one worker of 10 threads. After a
warm-up, three runs of each, interleaved; the figures are the medians.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime

import requests
from _harness import (
    ROOT,
    Processes,
    auth_headers,
    register_shell_agent,
    services,
    wait_session,
)
from celery import chain, group

LAYERS, WIDTH, THREADS = 10, 10, 10
ROUNDS = 3  # measured runs of each; the medians are compared


def layered_dag() -> dict:
    tasks = []
    for layer in range(LAYERS):
        for index in range(WIDTH):
            previous = [f"l{layer - 1}t{i}" for i in range(WIDTH)] if layer else []
            tasks.append({"key": f"l{layer}t{index}", "command": "true", "depends_on": previous})
    return {"title": "overhead", "prompt": "bench", "dag": {"tasks": tasks}}


def orchestrated(api: str) -> float:
    """Seconds from submitting the session to its recorded end (`finished_at`).

    The end comes from the session itself, so the completion can be polled slowly: a fast
    poll of a 100-task session would take CPU from the run it measures."""
    started = datetime.now(UTC)
    response = requests.post(
        f"{api}/api/v1/sessions", json=layered_dag(), headers=auth_headers(), timeout=60
    )
    response.raise_for_status()
    session = wait_session(api, response.json()["id"], interval=0.25)
    assert session["status"] == "completed", session["status"]
    return (datetime.fromisoformat(session["finished_at"]) - started).total_seconds()


def raw_celery() -> float:
    from _raw_celery import noop

    canvas = chain(*[group(noop.si() for _ in range(WIDTH)) for _ in range(LAYERS)])
    started = time.perf_counter()
    canvas.apply_async().get(timeout=300, disable_sync_subtasks=False)
    return time.perf_counter() - started


def main() -> None:
    with services() as (database_url, redis_url, home):
        import os

        env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
               "WORKSPACE_ROOT": str(home / "work"), "PYTHONPATH": str(ROOT)}  # fmt: skip
        os.environ.update(REDIS_URL=redis_url)
        processes = Processes(env, home)
        try:
            processes.worker("tasks.worker", THREADS)
            processes.worker("_raw_celery", THREADS, queues="raw", cwd=ROOT / "bench")
            api = processes.api()
            register_shell_agent(api, capacity=THREADS)
            orchestrated(api)  # warm-up: imports, connections
            raw_celery()
            ours_runs, raw_runs = [], []
            for _ in range(ROUNDS):  # interleaved, so load from elsewhere hits both alike
                ours_runs.append(orchestrated(api) * 1000 / (LAYERS * WIDTH))
                raw_runs.append(raw_celery() * 1000 / (LAYERS * WIDTH))
            ours, raw = statistics.median(ours_runs), statistics.median(raw_runs)
        finally:
            processes.stop()
    print(f"orchestrated_ms_per_task: {ours:.2f}")
    print(f"raw_celery_ms_per_task: {raw:.2f}")
    print(f"overhead_ratio: {ours / raw:.2f}")


if __name__ == "__main__":
    main()
