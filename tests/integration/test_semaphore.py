"""The agent lock on a real Redis: fairness, capacity, leases, fencing and deadlock tools."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from app.locks import (
    FairSemaphore,
    LeaseLost,
    LockTimeout,
    SemaphoreState,
    acquire_all,
    find_wait_for_cycles,
)
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]

# A process that takes the semaphore (or waits for it) and then hangs until it is killed.
CHILD = """
import sys, time
import redis
from app.locks import FairSemaphore
url, name, lease_ttl, waiter_ttl, owner = sys.argv[1:6]
client = redis.Redis.from_url(url)
semaphore = FairSemaphore(client, name, lease_ttl=float(lease_ttl), waiter_ttl=float(waiter_ttl))
lease = semaphore.acquire(owner=owner)
print(lease.token, flush=True)
time.sleep(300)
"""


@pytest.fixture
def spawn(redis_url):
    """Start child processes that acquire a semaphore; kill leftovers after the test."""
    children = []

    def start(name: str, owner: str, lease_ttl: float = 1.0, waiter_ttl: float = 1.0):
        args = [redis_url, name, str(lease_ttl), str(waiter_ttl), owner]
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, *args],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
        )
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait(10)
        child.stdout.close()


class Waiter(threading.Thread):
    """A thread that acquires, runs `work(lease)` and releases, keeping any exception."""

    def __init__(self, semaphore: FairSemaphore, owner: str, work=None, timeout: float = 20.0):
        super().__init__(daemon=True)
        self.semaphore, self.owner, self.work, self.timeout = semaphore, owner, work, timeout
        self.lease = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.semaphore.acquire(timeout=self.timeout, owner=self.owner) as lease:
                self.lease = lease
                if self.work is not None:
                    self.work(lease)
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self, timeout: float = 20.0) -> None:
        self.join(timeout)
        assert not self.is_alive(), f"{self.owner} still running"
        if self.error is not None:
            raise self.error


def test_waiters_are_served_in_arrival_order(redis_client):
    semaphore = FairSemaphore(redis_client, "agent-fifo", lease_ttl=5.0)
    order: list[int] = []
    first = semaphore.acquire(owner="first")
    waiters = []
    for i in range(20):
        waiter = Waiter(semaphore, f"w{i}", work=lambda lease, i=i: order.append(i))
        waiter.start()
        waiters.append(waiter)
        wait_until(lambda i=i: len(semaphore.state().waiters) == i + 1, 10, message=f"w{i} queued")
    assert semaphore.state().waiters == [f"w{i}" for i in range(20)]

    first.release()
    for waiter in waiters:
        waiter.finish()

    assert order == list(range(20))
    assert semaphore.state().holders == []


def test_capacity_is_never_exceeded(redis_client):
    semaphore = FairSemaphore(redis_client, "agent-cap", capacity=3, lease_ttl=5.0)
    guard = threading.Lock()
    current = peak = 0

    def work(lease) -> None:
        nonlocal current, peak
        with guard:
            current += 1
            peak = max(peak, current)
        assert len(semaphore.state().holders) <= 3
        time.sleep(0.01)  # the work itself, so that holders overlap
        with guard:
            current -= 1

    waiters = [Waiter(semaphore, f"w{i}", work=work) for i in range(30)]
    for waiter in waiters:
        waiter.start()
    for waiter in waiters:
        waiter.finish(30)

    assert peak == 3
    assert semaphore.state() == SemaphoreState(holders=[], waiters=[])


def test_killed_holder_loses_its_slot_when_its_lease_runs_out(redis_client, spawn):
    lease_ttl = 1.5
    semaphore = FairSemaphore(redis_client, "agent-kill", lease_ttl=lease_ttl)
    child = spawn("agent-kill", "doomed", lease_ttl=lease_ttl)
    child_token = int(child.stdout.readline())
    assert semaphore.state().holders == ["doomed"]
    waiter = Waiter(semaphore, "next")
    waiter.start()
    wait_until(lambda: semaphore.state().waiters == ["next"], 10, message="next queued")

    child.send_signal(signal.SIGKILL)
    child.wait(10)
    waiter.finish()  # granted although nobody released the slot

    # A token is at least the grant's Redis time in ms x 1000, so these are the two grant times:
    # the slot moved only once the dead holder's lease (renewed until the kill) had run out.
    assert waiter.lease.token // 1000 >= child_token // 1000 + lease_ttl * 1000
    assert waiter.lease.token > child_token


def test_fencing_tokens_strictly_increase(redis_client):
    semaphore = FairSemaphore(redis_client, "agent-fence", capacity=2, lease_ttl=5.0)
    tokens = []
    for _ in range(20):
        with semaphore.acquire(timeout=5) as lease:
            tokens.append(lease.token)
    held = [semaphore.acquire(timeout=5) for _ in range(2)]
    waiter = Waiter(semaphore, "waiter", work=lambda lease: tokens.append(lease.token))
    waiter.start()
    wait_until(lambda: semaphore.state().waiters == ["waiter"], 10, message="waiter queued")
    tokens.extend(lease.token for lease in held)
    held[0].release()
    waiter.finish()
    held[1].release()
    redis_client.flushdb()  # Redis lost its data (restart without persistence) ...

    def server_ms() -> int:
        seconds, micros = redis_client.time()
        return seconds * 1000 + micros // 1000

    # ... and came back at least a millisecond later, as any restart does.
    wait_until(lambda: server_ms() > tokens[-1] // 1000, 5, message="server clock moved")
    with semaphore.acquire(timeout=5) as lease:
        tokens.append(lease.token)

    assert all(a < b for a, b in zip(tokens, tokens[1:], strict=False)), tokens


def test_dead_waiter_leaves_the_line(redis_client, spawn):
    semaphore = FairSemaphore(redis_client, "agent-ghost", lease_ttl=10.0)
    holder = semaphore.acquire(owner="holder")
    ghost = spawn("agent-ghost", "ghost", lease_ttl=10.0, waiter_ttl=0.6)
    wait_until(lambda: semaphore.state().waiters == ["ghost"], 15, message="ghost queued")
    done = threading.Event()
    waiter = Waiter(semaphore, "alive", work=lambda lease: done.wait(10))
    waiter.start()
    wait_until(lambda: semaphore.state().waiters == ["ghost", "alive"], 10, message="queued")

    ghost.send_signal(signal.SIGKILL)
    ghost.wait(10)
    wait_until(lambda: semaphore.state().waiters == ["alive"], 5, message="ghost pruned")
    holder.release()
    # The release handed the slot straight to the live waiter: the ghost got no 10 s lease.
    assert semaphore.state().holders == ["alive"]
    done.set()
    waiter.finish()

    assert semaphore.state().holders == []


def test_lost_lease_is_signalled(redis_client, monkeypatch):
    semaphore = FairSemaphore(redis_client, "agent-lost", lease_ttl=0.6)
    called = threading.Event()
    lease = semaphore.acquire(owner="worker", on_lost=lambda lease: called.set())
    assert semaphore.revoke("worker") == 1
    assert lease.lost.wait(2) and called.wait(2)
    with pytest.raises(LeaseLost):
        lease.check()
    assert lease.release() is False

    # Redis unreachable for the heartbeat: the lease is lost locally, the slot moves on.
    lease = semaphore.acquire(owner="cut-off")

    def unreachable(lease_id):
        raise redis.ConnectionError("connection refused")

    monkeypatch.setattr(semaphore, "renew_lease", unreachable)
    assert lease.lost.wait(3)
    other = FairSemaphore(redis_client, "agent-lost", lease_ttl=0.6)
    with other.acquire(timeout=3, owner="next") as taken:
        assert taken.token > lease.token


def test_acquire_all_takes_resources_in_global_order(redis_client):
    blocker = FairSemaphore(redis_client, "repo-b").acquire(owner="blocker")
    group = {}

    def run() -> None:
        group["leases"] = acquire_all(
            redis_client, [("repo-c", 1), ("agent-a", 1), ("repo-b", 1)], timeout=20, owner="job"
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    state = {name: FairSemaphore(redis_client, name).state for name in ("agent-a", "repo-b")}
    wait_until(lambda: state["repo-b"]().waiters == ["job"], 10, message="job waits on b")
    assert state["agent-a"]().holders == ["job"]
    assert FairSemaphore(redis_client, "repo-c").state().holders == []

    blocker.release()
    thread.join(10)
    leases = group["leases"]
    assert [lease.name for lease in leases] == ["agent-a", "repo-b", "repo-c"]
    leases.release()

    # On timeout it gives back what it already took.
    blocker = FairSemaphore(redis_client, "repo-b").acquire(owner="blocker")
    with pytest.raises(LockTimeout):
        acquire_all(redis_client, [("repo-b", 1), ("agent-a", 1)], timeout=0.3, owner="job")
    assert state["agent-a"]().holders == []
    blocker.release()


def test_wait_for_cycles_are_found(redis_client):
    one = FairSemaphore(redis_client, "agent-1", lease_ttl=5.0)
    two = FairSemaphore(redis_client, "agent-2", lease_ttl=5.0)
    held_one = one.acquire(owner="job-x")
    held_two = two.acquire(owner="job-y")
    FairSemaphore(redis_client, "agent-3").acquire(owner="job-z").release()
    x_waits = Waiter(two, "job-x", timeout=10)
    y_waits = Waiter(one, "job-y", timeout=10)
    x_waits.start()
    y_waits.start()

    cycles = wait_until(lambda: find_wait_for_cycles(redis_client, "orch"), 10, message="cycle")
    assert [sorted(cycle) for cycle in cycles] == [["job-x", "job-y"]]
    assert find_wait_for_cycles(redis_client, "elsewhere") == []

    assert one.revoke("job-x") == 1  # break the cycle: job-y gets agent-1
    y_waits.finish()
    assert held_one.lost.wait(5)
    held_two.release()
    x_waits.finish()
    assert find_wait_for_cycles(redis_client, "orch") == []
