"""Benchmark DAG validation, critical path, levels (and canvas compilation) on synthetic specs.

Run: .venv/bin/python bench/planning.py   (prints only `name: value` lines)
"""

from __future__ import annotations

import gc
import importlib
import random
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(1, str(Path(__file__).resolve().parent))

from app.planning import analyze, plan  # noqa: E402

SEED = 20240601
SIZES = (100, 1_000, 10_000)
# Best of 3 interleaved rounds, so load from other processes on the shared machine hits every
# size. The target is absolute: 10,000 tasks in under 2 s. A 10k/1k growth ratio of seconds is
# not a target (it measured cache misses under other processes' load); counting instructions
# instead needs callgrind, which takes ~90 s just to import the package here.
ROUNDS = 3
TARGET_10K_SECONDS = 2.0
CANVAS_MODULE = "_canvas_plan"
COMPILER_NAME = "compile_dispatch_plan"


def load_compiler() -> tuple[Callable[[dict], object] | None, str]:
    """`_canvas_plan.compile_dispatch_plan` and a status, or (None, why it is absent)."""
    try:
        canvas = importlib.import_module(CANVAS_MODULE)
    except ModuleNotFoundError as missing:
        if missing.name not in {"app.services", CANVAS_MODULE}:
            raise  # a dependency of the canvas module is missing: that is a real error
        return None, "module_missing"
    compiler = getattr(canvas, COMPILER_NAME, None)
    if compiler is None:
        return None, "function_missing"
    return compiler, "included"


def layered_spec(size: int, seed: int = SEED) -> dict:
    """A random layered DAG of `size` tasks, each depending on 1-3 tasks of the 2 layers above."""
    rng = random.Random(seed)
    width = max(4, int(size**0.5))
    tasks, layers = [], []
    for index in range(size):
        if index % width == 0:
            layers.append([])
        layer = len(layers) - 1
        candidates = [key for earlier in layers[max(0, layer - 2) : layer] for key in earlier]
        predecessors = rng.sample(candidates, min(len(candidates), rng.randint(1, 3)))
        likely = round(rng.uniform(0.2, 6.0), 2)
        key = f"task-{index}"
        tasks.append(
            {
                "key": key,
                "title": f"Task {index}",
                "description": "synthetic",
                "phase": "implementation",
                "required_capabilities": ["code_generation"],
                "depends_on": [
                    {"key": predecessor, "type": "finish_to_start", "required": True}
                    for predecessor in predecessors
                ],
                "optional": False,
                "estimate": {
                    "optimistic_hours": round(likely * 0.5, 2),
                    "likely_hours": likely,
                    "pessimistic_hours": round(likely * 2, 2),
                    "expected_hours": round(likely * 1.083, 3),
                    "level": "moderate",
                },
            }
        )
        layers[-1].append(key)
    return {"tasks": tasks}


def run_pipeline(spec: dict, compiler: Callable[[dict], object] | None) -> None:
    """Validate + levels + critical path (one `analyze` pass), then compile when available."""
    analysis = analyze(spec)
    if not analysis.critical_path:
        raise RuntimeError("a non-empty spec must have a critical path")
    if compiler is not None:
        compiler(spec)


REQUESTS = (
    "Fix typo in README installation section",
    "Fix the off-by-one error in the pagination helper",
    "Review the pull request that adds retry logic to the HTTP client",
    "Add dark mode to the mobile app",
    "Add Stripe checkout to the online shop so customers can pay for their orders",
    "Carve the reporting module out of the monolith into a separate microservice",
    "Implement a multi-tenant invoicing platform with a Postgres database, a GraphQL API, email "
    "notifications, PDF exports and Stripe billing",
)


def plan_requests(requests: tuple[str, ...]) -> None:
    """Plan each request with the heuristic planner."""
    for request in requests:
        plan(request)


def best_seconds(work: Callable[[], None], repeats: int) -> float:
    """Best-of-`repeats` wall time of `work()`, garbage collector paused (as timeit does)."""
    best = float("inf")
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            started = time.perf_counter()
            work()
            best = min(best, time.perf_counter() - started)
    finally:
        gc.enable()
    return best


def main() -> int:
    """Print the figures as `name: value` lines."""
    compiler, status = load_compiler()
    print(f"compile_included: {int(compiler is not None)}")
    print(f"compile_status: {status}")
    specs = {size: layered_spec(size) for size in SIZES}
    timings = dict.fromkeys(SIZES, float("inf"))
    for _ in range(ROUNDS):
        for size, spec in specs.items():
            repeats = max(5, 10_000 // size)
            run = partial(run_pipeline, spec, compiler)
            timings[size] = min(timings[size], best_seconds(run, repeats))
    for size in SIZES:
        print(f"plan_{size}_s: {timings[size]:.4f}")
    started = time.perf_counter()
    plan("Build a dashboard page with a REST API, a Postgres database and SSO login")
    print(f"heuristic_plan_request_s: {time.perf_counter() - started:.4f}")
    # Requests of every size: the heuristic planner's mean time per request (informational).
    seconds = best_seconds(partial(plan_requests, REQUESTS), 5)
    print(f"heuristic_plan_mean_request_ms: {seconds / len(REQUESTS) * 1000:.3f}")
    passed = timings[10_000] < TARGET_10K_SECONDS
    print(f"targets_met: {int(passed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
