"""Deadlock avoidance and detection for jobs that hold several semaphores at once.

`acquire_all` takes resources in one global order (sorted by name) and gives back what it got
when it fails; `wait_for_graph` and `find_wait_for_cycles` read every semaphore of a namespace
and report owners that wait for each other, for a beat job that breaks cycles with `revoke`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator

import networkx as nx
import redis

from app.locks.semaphore import FairSemaphore, Lease, default_owner, key_prefix

logger = logging.getLogger(__name__)


class LeaseGroup:
    """Leases taken together by `acquire_all`, in global order; `lost` is set if any is lost."""

    def __init__(self, leases: list[Lease], lost: threading.Event) -> None:
        self.leases = leases
        self.lost = lost

    def __iter__(self) -> Iterator[Lease]:
        return iter(self.leases)

    def __len__(self) -> int:
        return len(self.leases)

    def __getitem__(self, name: str) -> Lease:
        for lease in self.leases:
            if lease.name == name:
                return lease
        raise KeyError(name)

    def __enter__(self) -> LeaseGroup:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.release()

    @property
    def tokens(self) -> dict[str, int]:
        """Fencing token per resource name."""
        return {lease.name: lease.token for lease in self.leases}

    def release(self) -> None:
        """Release every lease, last taken first."""
        errors = []
        for lease in reversed(self.leases):
            try:
                lease.release()
            except redis.RedisError as exc:
                errors.append(exc)
                logger.warning("semaphore release failed name=%s error=%s", lease.name, exc)
        if errors:
            raise errors[0]


def acquire_all(
    redis_client: redis.Redis,
    resources: Iterable[tuple[str, int]],
    timeout: float | None = None,
    owner: str = "",
    lease_ttl: float = 10.0,
    namespace: str = "orch",
    on_lost: Callable[[Lease], None] | None = None,
) -> LeaseGroup:
    """Acquire `(name, capacity)` resources sorted by name; on failure release and re-raise."""
    capacities: dict[str, int] = {}
    for name, capacity in resources:
        if capacities.setdefault(name, capacity) != capacity:
            raise ValueError(f"resource {name!r} listed with two capacities")
    owner = owner or default_owner()
    deadline = None if timeout is None else time.monotonic() + timeout
    lost = threading.Event()

    def lose(lease: Lease) -> None:
        lost.set()
        if on_lost is not None:
            on_lost(lease)

    leases: list[Lease] = []
    try:
        for name in sorted(capacities):
            semaphore = FairSemaphore(redis_client, name, capacities[name], lease_ttl, namespace)
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            leases.append(semaphore.acquire(timeout=left, owner=owner, on_lost=lose))
    except BaseException:
        LeaseGroup(leases, lost).release()
        raise
    return LeaseGroup(leases, lost)


def resource_names(redis_client: redis.Redis, namespace: str = "orch") -> list[str]:
    """Return the names of the namespace's semaphores that have a queue (SCAN, not KEYS)."""
    head, tail = key_prefix(namespace, ""), ":queue"
    head = head[:-1]  # key_prefix("") ends with "{}"; keep the opening brace only
    pattern = _glob_escape(head) + "*" + tail
    names = set()
    for key in redis_client.scan_iter(match=pattern, count=1000):
        key = key.decode() if isinstance(key, bytes) else key
        names.add(key[len(head) : -len(tail) - 1])
    return sorted(names)


def wait_for_graph(redis_client: redis.Redis, namespace: str = "orch") -> nx.DiGraph:
    """Build the graph owner -> owner it waits for, each edge labelled with the resource."""
    graph = nx.DiGraph()
    for name in resource_names(redis_client, namespace):
        state = FairSemaphore(redis_client, name, namespace=namespace).state()
        for waiter in state.waiters:
            for holder in state.holders:
                graph.add_edge(waiter, holder, resource=name)
    return graph


def find_wait_for_cycles(redis_client: redis.Redis, namespace: str = "orch") -> list[list[str]]:
    """Return the cycles of owners waiting for each other (a deadlock when capacity is 1)."""
    cycles = [list(cycle) for cycle in nx.simple_cycles(wait_for_graph(redis_client, namespace))]
    if cycles:
        logger.warning("semaphore wait-for cycles namespace=%s cycles=%s", namespace, cycles)
    return cycles


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
