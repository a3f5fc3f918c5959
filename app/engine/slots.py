"""Agent slots: each agent's capacity is a fair, leased, fenced Redis semaphore."""

from __future__ import annotations

import redis
from flask import current_app

from app.locks import FairSemaphore, Lease
from app.locks.connection import redis_from_url


def redis_client() -> redis.Redis:
    """A Redis client for this app's REDIS_URL, shared by the tasks of this process."""
    clients = current_app.extensions.setdefault("task_redis", {})
    url = current_app.config["REDIS_URL"]
    if url not in clients:
        # A sentinel:// list too: the locks follow a Redis failover (app/locks/connection.py).
        clients[url] = redis_from_url(url, socket_timeout=10, socket_connect_timeout=5)
    return clients[url]


def agent_semaphore(agent_id: str, capacity: int) -> FairSemaphore:
    """The fair, leased semaphore guarding the agent's `capacity` slots."""
    return FairSemaphore(
        redis_client(),
        f"agent:{agent_id}",
        capacity=capacity,
        lease_ttl=current_app.config["TASK_LEASE_SECONDS"],
    )


def free_slots(agent) -> int:
    """Slots of the agent (a row with id and capacity) that no live lease holds in Redis."""
    holders = agent_semaphore(agent.id, agent.capacity).state().holders
    return max(agent.capacity - len(holders), 0)


class SlotTaker:
    """Takes a free slot of the agent a claim chose, so that the claim starts the attempt in
    the same transaction (or, in a git workdir, once the worktree is made). It never waits (a
    busy agent parks the task in its wait list), and holds at most one slot: a claim step
    retried after a database error gives back the first."""

    def __init__(self, owner: str, on_lost):
        self.owner, self.on_lost = owner, on_lost
        self.lease: Lease | None = None
        self.agent_id: str | None = None

    def __call__(self, agent, workdir: str) -> int | None:
        self.release()
        semaphore = agent_semaphore(agent.id, agent.capacity)
        self.lease = semaphore.try_acquire(owner=self.owner, on_lost=self.on_lost)
        self.agent_id = agent.id if self.lease is not None else None
        return self.lease.token if self.lease is not None else None

    def spare(self, agent) -> int:
        """Slots of the agent still free besides the one held."""
        return free_slots(agent)

    def release(self) -> bool:
        """Give the slot back, if one is held; True if one was."""
        if self.lease is None:
            return False
        self.lease.release()
        self.lease = None
        return True
