"""Measure the time the opencode driver adds around each OpenCode turn (real server, fake model).

Per turn: overhead = (run() called -> prompt_async accepted with its 204) + (session.idle seen ->
DriverResult returned). Both points come from the driver's own event timeline (`t_ms` since run()
started). `overhead_to_post_*` stops the first part when the prompt_async request is sent instead,
leaving OpenCode's own handling of that request (it stores the user message) out.
Prints only `name: value` lines. Usage: python bench/opencode_overhead.py [--turns 20]
"""

from __future__ import annotations

import argparse
import contextlib
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.drivers.base import AgentSpec, DriverJob  # noqa: E402
from app.drivers.opencode import OpenCodeDriver  # noqa: E402
from app.drivers.opencode_server import (  # noqa: E402
    OpenCodeServer,
    install_opencode,
    scripted_provider_config,
)
from app.workspaces import ensure_repository  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def scripted_model() -> Iterator[str]:
    """The scripted model in its own process, so this process's CPU time is the driver's alone."""
    command = [sys.executable, "-m", "app.standalone.scripted_model", "--port", "0"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        match = re.search(r"listening on (\S+)", process.stdout.readline())
        if not match:
            raise SystemExit("the scripted model server did not start")
        yield match.group(1)
    finally:
        process.terminate()
        process.wait(timeout=10)


def cpu_seconds() -> float:
    """User plus system CPU time of this process (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest-rank."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    args = parser.parse_args()
    binary = install_opencode()
    with (
        tempfile.TemporaryDirectory(prefix="opencode-bench-") as scratch,
        scripted_model() as model_url,
    ):
        repo = ensure_repository(Path(scratch) / "repo")
        server = OpenCodeServer(
            binary,
            Path(scratch) / "state",
            config=scripted_provider_config(model_url),
            extra_env={"npm_config_offline": "true"},
            die_with_parent=True,
        )
        started = time.perf_counter()
        server.start(timeout=60)
        print(f"server_start_ms: {(time.perf_counter() - started) * 1000:.0f}")
        try:
            agent = AgentSpec(
                id="bench",
                name="bench",
                driver="opencode",
                endpoint=server.url,
                model="fake/scripted",
            )
            driver = OpenCodeDriver()
            overheads, to_post, before, after, turns, opencode_turns, cpu = (
                [],
                [],
                [],
                [],
                [],
                [],
                [],
            )
            for index in range(args.turns + 1):
                job = DriverJob(
                    session_id="bench",
                    task_id=f"turn-{index}",
                    task_key=f"turn-{index}",
                    attempt=1,
                    title="bench",
                    description="",
                    agent=agent,
                    workdir=str(repo),
                    timeout_seconds=60,
                    prompt=f"short scripted turn {index}",
                )
                cpu0, t0 = cpu_seconds(), time.perf_counter()
                result = driver.run(job, threading.Event())
                total_ms = (time.perf_counter() - t0) * 1000
                cpu_ms = (cpu_seconds() - cpu0) * 1000
                if not result.succeeded:
                    raise SystemExit(f"turn {index} failed: {result.error}")
                marks = {e["type"]: e["t_ms"] for e in result.events}
                sent = next(e for e in result.events if e["type"] == "prompt.sent")
                if index == 0:
                    print(
                        f"first_turn_ms: {total_ms:.1f}"
                    )  # instance bootstrap + provider SDK load
                    continue
                before.append(marks["prompt.sent"])
                after.append(total_ms - marks["idle"])
                overheads.append(before[-1] + after[-1])
                to_post.append(sent["posted_ms"] + after[-1])
                turns.append(total_ms)
                opencode_turns.append(marks["idle"] - marks["prompt.sent"])
                cpu.append(cpu_ms)
        finally:
            server.stop()
    print(f"turns: {len(turns)}")
    print(f"overhead_p50_ms: {statistics.median(overheads):.1f}")
    print(f"overhead_p99_ms: {percentile(overheads, 99):.1f}")
    print(f"overhead_to_post_p50_ms: {statistics.median(to_post):.1f}")
    print(f"overhead_to_post_p99_ms: {percentile(to_post, 99):.1f}")
    print(f"overhead_before_prompt_p50_ms: {statistics.median(before):.1f}")
    print(f"overhead_after_idle_p50_ms: {statistics.median(after):.1f}")
    print(f"turn_p50_ms: {statistics.median(turns):.1f}")
    print(f"opencode_turn_p50_ms: {statistics.median(opencode_turns):.1f}")
    print(f"driver_cpu_p50_ms: {statistics.median(cpu):.1f}")


if __name__ == "__main__":
    main()
