"""Benchmark of the agent lock against redis-py's Lock: throughput, hand-off, fairness, idle cost.

Run `python bench/locks.py` with REDIS_URL (default redis://127.0.0.1:6379/13, flushed first);
it prints only `name: value` lines and takes about 45 s.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.locks import FairSemaphore  # noqa: E402

URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13")
WAITERS = 16


class CountingConnection(redis.Connection):
    """A connection that counts the commands it sends."""

    sent = 0
    guard = threading.Lock()

    def send_command(self, *args, **kwargs):
        with CountingConnection.guard:
            CountingConnection.sent += 1
        return super().send_command(*args, **kwargs)


def report(name: str, value: float | int) -> None:
    print(f"{name}: {value:.3f}" if isinstance(value, float) else f"{name}: {value}", flush=True)


def cycles_per_s(cycle, seconds: float = 1.0) -> float:
    """Run `cycle` back to back for `seconds` and return how many ran per second."""
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        cycle()
        count += 1
    return count / elapsed


def bench_cycles(client: redis.Redis) -> None:
    semaphore = FairSemaphore(client, "bench-cycles")
    lock = client.lock("bench:redispy-cycles", timeout=10)

    def ours() -> None:
        semaphore.acquire().release()

    def theirs() -> None:
        lock.acquire()
        lock.release()

    results = {"ours": [], "theirs": []}
    for _ in range(5):  # interleaved, best of five, to damp the noise of a shared machine
        results["ours"].append(cycles_per_s(ours))
        results["theirs"].append(cycles_per_s(theirs))
    best_ours, best_theirs = max(results["ours"]), max(results["theirs"])
    report("ours_cycles_per_s", best_ours)
    report("redispy_cycles_per_s", best_theirs)
    report("cycle_ratio", best_ours / best_theirs)


def bench_handoff(client: redis.Redis, rounds: int = 40) -> None:
    """16 threads take turns; measure release -> next holder running."""
    semaphore = FairSemaphore(client, "bench-handoff")
    released_at: list[float | None] = [None]
    samples: list[float] = []

    def run() -> None:
        for _ in range(rounds):
            lease = semaphore.acquire()
            if released_at[0] is not None:
                samples.append(time.perf_counter() - released_at[0])
            released_at[0] = time.perf_counter()
            lease.release()

    threads = [threading.Thread(target=run) for _ in range(WAITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    samples.sort()
    report("handoff_samples", len(samples))
    report("handoff_p50_ms", statistics.median(samples) * 1000)
    report("handoff_p99_ms", samples[int(len(samples) * 0.99) - 1] * 1000)


def fifo_violations(take, queued, rounds: int = 2, gap: float = 0.02, hold: float = 0.005) -> int:
    """Queue WAITERS threads one after the other (`gap` apart) behind a held lock; count grants
    that went to someone while an earlier arrival was still waiting."""
    violations = 0
    for _ in range(rounds):
        release_first = take("first")
        granted: list[int] = []
        threads = []
        for i in range(WAITERS):
            started = threading.Event()

            def run(i=i, started=started, granted=granted) -> None:
                started.set()
                release = take(f"w{i}")
                granted.append(i)
                time.sleep(hold)
                release()

            thread = threading.Thread(target=run)
            thread.start()
            threads.append(thread)
            started.wait()
            time.sleep(gap)  # arrival order is set by the spacing, the same for both locks
            queued(i + 1)
        release_first()
        for thread in threads:
            thread.join()
        waiting = sorted(granted)
        for i in granted:
            violations += i != waiting[0]
            waiting.remove(i)
    return violations


def bench_fifo(client: redis.Redis) -> None:
    semaphore = FairSemaphore(client, "bench-fifo")

    def take_ours(owner: str):
        return semaphore.acquire(owner=owner).release

    def queued_ours(count: int) -> None:
        deadline = time.monotonic() + 5
        while len(semaphore.state().waiters) < count and time.monotonic() < deadline:
            time.sleep(0.001)

    def take_theirs(owner: str):
        lock = client.lock("bench:redispy-fifo", timeout=30)
        lock.acquire()
        return lock.release

    report("fifo_violations_ours", fifo_violations(take_ours, queued_ours))
    report("fifo_violations_redispy", fifo_violations(take_theirs, lambda count: None))


def info_commands(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])


def bench_idle_waiters(client: redis.Redis) -> None:
    """WAITERS threads block on a held lock (default TTLs); count Redis commands per second."""
    baseline_start = info_commands(client)
    time.sleep(2.0)
    background = (info_commands(client) - baseline_start - 1) / 2.0  # other users of the server

    pool = redis.ConnectionPool.from_url(URL, connection_class=CountingConnection)
    counted = redis.Redis(connection_pool=pool)
    semaphore = FairSemaphore(counted, "bench-idle")
    holder = semaphore.acquire(owner="holder")
    threads = [
        threading.Thread(target=lambda i=i: semaphore.acquire(owner=f"w{i}").release())
        for i in range(WAITERS)
    ]
    for thread in threads:
        thread.start()
    while len(semaphore.state().waiters) < WAITERS:
        time.sleep(0.01)
    window = semaphore.waiter_ttl  # three heartbeats of every waiter
    time.sleep(0.5)
    server_start, client_start = info_commands(client), CountingConnection.sent
    time.sleep(window)
    server = info_commands(client) - server_start - 1 - background * window
    sent = CountingConnection.sent - client_start
    holder.release()
    for thread in threads:
        thread.join()
    report("idle_window_s", window)
    report("commands_per_waiter_per_s", server / WAITERS / window)
    report("client_commands_per_waiter_per_s", sent / WAITERS / window)
    report("background_commands_per_s", background)


def main() -> None:
    client = redis.Redis.from_url(URL)
    client.flushdb()
    started = time.perf_counter()
    bench_cycles(client)
    bench_handoff(client)
    bench_fifo(client)
    bench_idle_waiters(client)
    client.flushdb()
    report("bench_seconds", time.perf_counter() - started)


if __name__ == "__main__":
    main()
