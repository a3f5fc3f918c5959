"""Leases granted by a FairSemaphore, renewed by one heartbeat thread per process."""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis

logger = logging.getLogger(__name__)


class LeaseLost(RuntimeError):
    """The lease expired or was revoked; the work it guards must stop."""


class Grantor(Protocol):
    """What a lease needs of the semaphore that granted it (a FairSemaphore)."""

    name: str
    lease_ttl: float

    def renew_lease(self, lease_id: str) -> bool: ...

    def release_lease(self, lease_id: str) -> bool: ...


class Lease:
    """A granted slot with its fencing token, renewed every `lease_ttl / 3` until released."""

    def __init__(
        self,
        semaphore: Grantor,
        lease_id: str,
        token: int,
        owner: str,
        issued_after: float,
        on_lost: Callable[[Lease], None] | None = None,
    ) -> None:
        self.semaphore = semaphore
        self.name = semaphore.name
        self.lease_id = lease_id
        self.token = token
        self.owner = owner
        self.lost = threading.Event()
        self._on_lost = on_lost
        self._valid_until = issued_after + semaphore.lease_ttl
        self._done = threading.Event()
        _heartbeats.add(self, time.monotonic() + semaphore.lease_ttl / 3.0)

    def __repr__(self) -> str:
        return f"Lease(name={self.name!r}, owner={self.owner!r}, token={self.token})"

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.release()
        except redis.RedisError:
            if exc_type is None:
                raise
            logger.exception("semaphore release failed name=%s owner=%s", self.name, self.owner)

    @property
    def held(self) -> bool:
        """True while the lease is neither released, lost nor past its local deadline."""
        return (
            not self._done.is_set()
            and not self.lost.is_set()
            and time.monotonic() < self._valid_until
        )

    def check(self) -> None:
        """Raise LeaseLost unless the lease is still held."""
        if not self.held:
            raise LeaseLost(f"lease on {self.name!r} (token {self.token}) is no longer held")

    def renew(self) -> bool:
        """Extend the lease by `lease_ttl`; return False (and set `lost`) if it was gone."""
        sent = time.monotonic()
        if self.semaphore.renew_lease(self.lease_id):
            self._valid_until = sent + self.semaphore.lease_ttl
            return True
        if not self._done.is_set():
            self._mark_lost("expired")
        return False

    def release(self) -> bool:
        """Give the slot to the next waiter; return True if the lease was still valid."""
        if self._done.is_set():
            return False
        self._done.set()
        _heartbeats.discard(self)
        valid = self.semaphore.release_lease(self.lease_id)
        logger.debug(
            "semaphore released name=%s owner=%s token=%d valid=%s",
            self.name, self.owner, self.token, valid,
        )  # fmt: skip
        return valid

    def _beat(self) -> float | None:
        """Renew once for the heartbeat thread; return when to beat next, or None to stop."""
        if self._done.is_set() or self.lost.is_set():
            return None
        interval = self.semaphore.lease_ttl / 3.0
        try:
            return time.monotonic() + interval if self.renew() else None
        except redis.RedisError as exc:
            left = self._valid_until - time.monotonic()
            if left <= 0:
                self._mark_lost("unreachable")
                return None
            logger.warning(
                "semaphore renew failed name=%s owner=%s error=%s", self.name, self.owner, exc
            )
            return time.monotonic() + min(interval / 3.0, left)

    def _mark_lost(self, reason: str) -> None:
        self.lost.set()
        logger.warning(
            "semaphore lease lost name=%s owner=%s token=%d reason=%s",
            self.name, self.owner, self.token, reason,
        )  # fmt: skip
        if self._on_lost is not None:
            try:
                self._on_lost(self)
            except Exception:
                logger.exception("semaphore on_lost failed name=%s", self.name)


class _Heartbeats:
    """A daemon thread that renews every live lease of this process when it falls due."""

    SLACK = 0.1  # renew up to this early, so that one wake-up serves every lease due about then

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: list[tuple[float, int, str]] = []  # (due, order, lease id); a heap
        self._leases: dict[str, Lease] = {}
        self._order = itertools.count()
        self._pid = 0

    def add(self, lease: Lease, due: float) -> None:
        with self._cond:
            if self._pid != os.getpid():  # first use, or a fork: the thread did not survive
                self._pid, self._due, self._leases = os.getpid(), [], {}
                threading.Thread(target=self._run, name="lease-heartbeats", daemon=True).start()
            wake = not self._due or due < self._due[0][0] - self.SLACK
            self._leases[lease.lease_id] = lease
            heapq.heappush(self._due, (due, next(self._order), lease.lease_id))
            if wake:
                self._cond.notify()

    def discard(self, lease: Lease) -> None:
        with self._cond:
            self._leases.pop(lease.lease_id, None)

    def _run(self) -> None:
        while True:
            for lease in self._take_due():
                try:
                    due = lease._beat()
                except Exception:
                    logger.exception("semaphore heartbeat failed name=%s", lease.name)
                    lease._mark_lost("heartbeat error")
                    due = None
                if due is None:
                    self.discard(lease)
                else:
                    self.add(lease, due)

    def _take_due(self) -> list[Lease]:
        with self._cond:
            while True:
                now = time.monotonic()
                batch = []
                while self._due and self._due[0][0] <= now + self.SLACK:
                    lease = self._leases.get(heapq.heappop(self._due)[2])
                    if lease is not None:
                        batch.append(lease)
                if batch:
                    return batch
                self._cond.wait(self._due[0][0] - now if self._due else None)


_heartbeats = _Heartbeats()
