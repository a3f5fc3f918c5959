"""Redis locks that guard agents: a fair, leased, fenced counting semaphore and deadlock tools."""

from app.locks.lease import Lease, LeaseLost
from app.locks.semaphore import (
    FairSemaphore,
    LockTimeout,
    SemaphoreState,
    default_owner,
)
from app.locks.waitfor import (
    LeaseGroup,
    acquire_all,
    find_wait_for_cycles,
    resource_names,
    wait_for_graph,
)

__all__ = [
    "FairSemaphore",
    "Lease",
    "LeaseGroup",
    "LeaseLost",
    "LockTimeout",
    "SemaphoreState",
    "acquire_all",
    "default_owner",
    "find_wait_for_cycles",
    "resource_names",
    "wait_for_graph",
]
