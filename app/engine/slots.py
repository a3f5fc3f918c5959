"""Agent slots: each agent's capacity is a fair, leased, fenced Redis semaphore."""

from __future__ import annotations

import redis
from flask import current_app

from app.locks import FairSemaphore, Lease

from .worktrees import needs_worktree


def redis_client() -> redis.Redis:
    """A Redis client for this app's REDIS_URL, shared by the tasks of this process."""
    clients = current_app.extensions.setdefault("task_redis", {})
    url = current_app.config["REDIS_URL"]
    if url not in clients:
        clients[url] = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
    return clients[url]


def agent_semaphore(agent_id: str, capacity: int) -> FairSemaphore:
    """The fair, leased semaphore guarding the agent's `capacity` slots."""
    return FairSemaphore(
        redis_client(),
        f"agent:{agent_id}",
        capacity=capacity,
        lease_ttl=current_app.config["TASK_LEASE_SECONDS"],
    )


class SlotTaker:
    """Takes a free slot of the agent a claim chose, so that the claim starts the attempt in
    the same transaction. It never waits (a busy agent leaves the task `assigned`), and holds
    at most one slot: a claim step retried after a database error gives back the first."""

    def __init__(self, owner: str, on_lost):
        self.owner, self.on_lost = owner, on_lost
        self.lease: Lease | None = None

    def __call__(self, agent, workdir: str) -> int | None:
        self.release()
        if needs_worktree(workdir):  # the worktree is made before the attempt starts
            return None
        semaphore = agent_semaphore(agent.id, agent.capacity)
        self.lease = semaphore.try_acquire(owner=self.owner, on_lost=self.on_lost)
        return self.lease.token if self.lease is not None else None

    def release(self) -> None:
        """Give the slot back, if one is held."""
        if self.lease is not None:
            self.lease.release()
            self.lease = None
