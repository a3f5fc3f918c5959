"""A fair, leased and fenced counting semaphore on Redis that guards agents.

`FairSemaphore(redis_client, name, capacity=1, lease_ttl=10.0, namespace="orch",
waiter_ttl=None)` (every client of one resource must agree on `capacity`):
- `acquire(timeout=None, owner="", on_lost=None) -> Lease` waits first come, first served by
  server-issued tickets and raises `LockTimeout`; `try_acquire(owner="", on_lost=None)` returns
  a Lease or None without waiting and without jumping the queue.
- `state() -> SemaphoreState(holders, waiters)` lists owners; `revoke(owner) -> int` ends an
  owner's leases (to break a deadlock).
A `Lease` has `.token` (fencing token, strictly increasing per resource, even across a Redis that
lost its data), `.lost` (an Event set when the heartbeat finds the lease gone; `on_lost(lease)` is
called too, on the heartbeat thread), `.held`, `.check()` (raises `LeaseLost`), `.renew()`,
`.release()`, and is a context manager. Waiters block on BLPOP of their own inbox and beat every
`waiter_ttl / 3` s (default 5 s, kept under the client's socket_timeout); the heads of the line
also wake when the first holder's lease runs out, so a dead holder is replaced within its TTL.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis

from app.locks.lease import Lease
from app.locks.lua import register as register_scripts

logger = logging.getLogger(__name__)

IDLE_EXPIRY_MS = 3_600_000


class LockTimeout(TimeoutError):
    """No slot was granted before the timeout."""


@dataclass(frozen=True)
class SemaphoreState:
    """Owners holding a resource and owners waiting for it, in queue order."""

    holders: list[str]
    waiters: list[str]


def default_owner() -> str:
    """Return `host:pid:thread`, the owner recorded for the wait-for graph by default."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def key_prefix(namespace: str, name: str) -> str:
    """Return the prefix of a resource's keys; the braces keep them in one cluster slot."""
    return f"{namespace}:sem:{{{name}}}"


def read_timeout(redis_client: redis.Redis) -> float | None:
    """Return the client's socket read timeout (redis-py 8 defaults it to 5 s), or None."""
    kwargs = redis_client.connection_pool.connection_kwargs
    for key in ("socket_timeout", "orig_socket_timeout"):
        if kwargs.get(key) is not None:
            return float(kwargs[key])
    return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class FairSemaphore:
    """A counting semaphore with `capacity` slots, granted in ticket order."""

    def __init__(
        self,
        redis_client: redis.Redis,
        name: str,
        capacity: int = 1,
        lease_ttl: float = 10.0,
        namespace: str = "orch",
        waiter_ttl: float | None = None,
    ) -> None:
        if not name:
            raise ValueError("name must not be empty")
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if lease_ttl <= 0.0:
            raise ValueError("lease_ttl must be positive")
        self.redis = redis_client
        self.name = name
        self.capacity = int(capacity)
        self.lease_ttl = float(lease_ttl)
        self.waiter_ttl = float(waiter_ttl) if waiter_ttl else max(self.lease_ttl, 15.0)
        self.namespace = namespace
        self._prefix = key_prefix(namespace, name)
        self._keys = [f"{self._prefix}:queue"]  # the scripts derive the other keys from it
        self._lease_ms = max(1, round(self.lease_ttl * 1000))
        self._waiter_ms = max(1, round(self.waiter_ttl * 1000))
        self._idle_ms = max(IDLE_EXPIRY_MS, 10 * max(self._lease_ms, self._waiter_ms))
        self._scripts = register_scripts(redis_client)
        # A BLPOP must return before the socket times out, or redis-py drops the connection.
        socket_timeout = read_timeout(redis_client)
        self._max_block = self.waiter_ttl / 3.0
        if socket_timeout:
            self._max_block = min(self._max_block, max(0.05, socket_timeout * 0.8))

    def acquire(
        self,
        timeout: float | None = None,
        owner: str = "",
        on_lost: Callable[[Lease], None] | None = None,
    ) -> Lease:
        """Wait in line for a slot (forever when `timeout` is None); raise LockTimeout."""
        lease_id = uuid.uuid4().hex
        owner = owner or default_owner()
        started = time.monotonic()
        deadline = None if timeout is None else started + max(0.0, timeout)
        reply = self._acquire(lease_id, owner, "wait")
        try:
            token, issued_after = self._wait(lease_id, owner, reply, started, deadline)
        except LockTimeout:
            raise
        except BaseException:  # interrupted or Redis failed: do not leave a ghost in line
            self._abandon(lease_id)
            raise
        logger.debug(
            "semaphore acquired name=%s owner=%s token=%d waited_ms=%.1f",
            self.name, owner, token, (time.monotonic() - started) * 1000,
        )  # fmt: skip
        return Lease(self, lease_id, token, owner, issued_after, on_lost)

    def try_acquire(
        self, owner: str = "", on_lost: Callable[[Lease], None] | None = None
    ) -> Lease | None:
        """Take a slot only if one is free and nobody waits ahead; never block."""
        lease_id = uuid.uuid4().hex
        owner = owner or default_owner()
        sent = time.monotonic()
        reply = self._acquire(lease_id, owner, "try")
        if reply[0] != 1:
            return None
        return Lease(self, lease_id, int(reply[1]), owner, sent, on_lost)

    def state(self) -> SemaphoreState:
        """Return the owners holding and the live owners waiting, read in one atomic step."""
        held, waiting = self._scripts.snapshot(keys=self._keys, args=self._args())
        return SemaphoreState([_text(o) for o in held], [_text(o) for o in waiting])

    def revoke(self, owner: str) -> int:
        """End every lease `owner` holds on this resource (breaks deadlocks); return the count."""
        count = int(self._scripts.revoke(keys=self._keys, args=self._args(owner)))
        logger.warning("semaphore revoked name=%s owner=%s leases=%d", self.name, owner, count)
        return count

    def _args(self, *rest: object) -> list[object]:
        return [self.capacity, self._idle_ms, *rest]

    def _acquire(self, lease_id: str, owner: str, mode: str) -> list:
        args = self._args(lease_id, self._lease_ms, self._waiter_ms, owner, mode)
        return self._scripts.acquire(keys=self._keys, args=args)

    def _wait(
        self, lease_id: str, owner: str, reply: list | None, sent: float, deadline: float | None
    ) -> tuple[int, float]:
        """Block on the waiter's inbox until granted; return the token and a grant lower bound."""
        inbox = f"{self._prefix}:wake:{lease_id}"
        alive = f"{self._prefix}:alive:{lease_id}"
        previous = current = sent  # the grant happened after `previous`
        beat_at = sent + self._max_block
        near_head, hint_at = False, None  # a head polls when the first holder's lease runs out
        while True:
            if reply is not None:
                if reply[0] == 1:
                    return int(reply[1]), previous
                rank, hint_ms = int(reply[1]), int(reply[2])
                near_head = 0 <= rank < self.capacity
                hint_at = current + hint_ms / 1000.0 if near_head and hint_ms >= 0 else None
                reply = None
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                token = self._leave(lease_id)
                if token is None:
                    raise LockTimeout(f"no slot of {self.name!r} within the timeout")
                return token, previous
            previous, current = current, now
            if now >= beat_at or (hint_at is not None and now >= hint_at):
                beat_at = now + self._max_block
                if near_head or not self.redis.pexpire(alive, self._waiter_ms):
                    reply = self._acquire(lease_id, owner, "poll")
                continue
            until = min(beat_at, deadline or beat_at, (hint_at or beat_at) + 0.002)
            try:
                item = self.redis.blpop([inbox], timeout=round(max(until - now, 0.001), 3))
            except redis.TimeoutError:  # socket_timeout was shorter than we knew: block less
                self._max_block = max(0.25, self._max_block / 2.0)
                block = until - now
                logger.warning("semaphore socket timeout name=%s block_s=%.1f", self.name, block)
                item = None
            if item is None:
                continue
            message = _text(item[1])
            kind, value = message[:1], int(message[2:])
            if kind == "t":
                return value, previous
            near_head = True
            hint_at = time.monotonic() + value / 1000.0 if value >= 0 else None

    def _leave(self, lease_id: str) -> int | None:
        token = self._scripts.leave(keys=self._keys, args=self._args(lease_id))
        return None if token is None else int(token)

    def _abandon(self, lease_id: str) -> None:
        try:
            if self._leave(lease_id) is not None:
                self.release_lease(lease_id)
        except redis.RedisError as exc:
            logger.warning("semaphore leave failed name=%s error=%s", self.name, exc)

    def renew_lease(self, lease_id: str) -> bool:
        """Extend a granted lease by the TTL; False when it is gone (expired or revoked)."""
        args = self._args(lease_id, self._lease_ms)
        return bool(self._scripts.renew(keys=self._keys, args=args))

    def release_lease(self, lease_id: str) -> bool:
        """End a granted lease and wake the next waiter; False when it was already gone."""
        return bool(self._scripts.release(keys=self._keys, args=self._args(lease_id)))
