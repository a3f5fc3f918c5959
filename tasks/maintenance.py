"""Beat jobs that keep the system tidy: agent health checks, retention, worktree clean-up and
breaking lock wait-for cycles. Each beat job finds due ids and fans out one guarded task per id;
every run is recorded in `beat_job_runs` (see app/services/beat_jobs.py)."""

from __future__ import annotations

import logging
from datetime import timedelta

import networkx as nx
from celery import shared_task

from app.engine.slots import redis_client
from app.engine.transactions import in_transaction
from app.locks import FairSemaphore, find_wait_for_cycles, wait_for_graph
from app.services import beat_jobs, maintenance
from app.services.maintenance import HealthPolicy
from models.base import utcnow

from . import helpers, recovery

logger = logging.getLogger(__name__)


def fan_out(task, calls: list[tuple]) -> int:
    """Enqueue `task` once per argument tuple (tests replace it to run them inline)."""
    return helpers.fan_out(task, calls)


# -- agent health ---------------------------------------------------------------------------
@shared_task(name="maintenance.agent_health", ignore_result=True)
@beat_jobs.beat_job("maintenance.agent_health")
def agent_health(heartbeat_timeout_s: float = 120, failures_before_unhealthy: int = 2) -> dict:
    """Check every watched agent: its heartbeat and, for OpenCode, GET /global/health."""
    tick = utcnow().isoformat()
    due = in_transaction(maintenance.agents_due_for_health_check)
    calls = [(agent_id, tick, heartbeat_timeout_s, failures_before_unhealthy) for agent_id in due]
    return {"agents": fan_out(check_agent, calls)}


@shared_task(name="maintenance.check_agent", ignore_result=True)
def check_agent(
    agent_id: str, tick: str, heartbeat_timeout_s: float = 120, failures_before_unhealthy: int = 2
) -> str | None:
    """Probe one agent (outside any transaction), then record the finding under its row lock."""
    if not helpers.first_delivery(f"agent_health:{agent_id}:{tick}"):
        return None
    target = in_transaction(maintenance.probe_target, agent_id)
    if target is None:
        return None
    driver, endpoint, config = target
    probed = driver == "opencode"
    problem = maintenance.probe(driver, endpoint, config) if probed else None
    policy = HealthPolicy(timedelta(seconds=heartbeat_timeout_s), failures_before_unhealthy)
    status = in_transaction(maintenance.record_health, agent_id, problem, probed, policy)
    recovery.wake_blocked()  # health restored: blocked tasks may run now
    return status.value if status is not None else None


# -- retention ------------------------------------------------------------------------------
@shared_task(name="maintenance.retention", ignore_result=True)
@beat_jobs.beat_job("maintenance.retention")
def retention(older_than_days: float = 30, job_runs_days: float = 14) -> dict:
    """Prune events and spare checkpoints of sessions finished long ago, and old job runs."""
    older_than = timedelta(days=older_than_days)
    due = in_transaction(maintenance.sessions_due_for_retention, older_than)
    runs = in_transaction(beat_jobs.prune_runs, timedelta(days=job_runs_days))
    return {"sessions": fan_out(prune_session, [(sid, older_than_days) for sid in due]),
            "job_runs_deleted": runs}  # fmt: skip


@shared_task(name="maintenance.prune_session", ignore_result=True)
def prune_session(session_id: str, older_than_days: float = 30) -> dict:
    """Prune one finished session (idempotent: a second run finds nothing left)."""
    return in_transaction(maintenance.prune_session, session_id, timedelta(days=older_than_days))


# -- worktrees ------------------------------------------------------------------------------
@shared_task(name="maintenance.worktree_cleanup", ignore_result=True)
@beat_jobs.beat_job("maintenance.worktree_cleanup")
def worktree_cleanup(grace_s: float = 3600, retryable_grace_s: float = 7 * 86400) -> dict:
    """Remove task worktrees and branches of sessions finished past their grace period."""
    grace, retryable = timedelta(seconds=grace_s), timedelta(seconds=retryable_grace_s)
    due = in_transaction(maintenance.sessions_due_for_worktree_cleanup, grace, retryable)
    calls = [(session_id, grace_s, retryable_grace_s) for session_id in due]
    return {"sessions": fan_out(clean_worktrees, calls)}


@shared_task(name="maintenance.clean_worktrees", ignore_result=True)
def clean_worktrees(
    session_id: str, grace_s: float = 3600, retryable_grace_s: float = 7 * 86400
) -> list[str] | None:
    """Clean one session's worktrees if still due (a retried session is left alone)."""
    grace, retryable = timedelta(seconds=grace_s), timedelta(seconds=retryable_grace_s)
    return in_transaction(maintenance.clean_worktrees, session_id, grace, retryable)


# -- wait-for cycles ------------------------------------------------------------------------
@shared_task(name="maintenance.deadlocks", ignore_result=True)
@beat_jobs.beat_job("maintenance.deadlocks")
def deadlocks(namespace: str = "orch") -> dict:
    """Find owners of Redis semaphores that wait for each other and break each cycle."""
    graph = wait_for_graph(redis_client(), namespace)
    cycles = [list(cycle) for cycle in nx.simple_cycles(graph)]
    if cycles:
        logger.warning("wait-for cycles namespace=%s cycles=%s", namespace, cycles)
    victims = maintenance.deadlock_victims(graph, cycles)
    calls = [(owner, resource, namespace) for owner, resource in victims]
    return {"cycles": len(cycles), "revocations": fan_out(break_deadlock, calls)}


@shared_task(name="maintenance.break_deadlock", ignore_result=True)
def break_deadlock(owner: str, resource: str, namespace: str = "orch") -> int:
    """Revoke `owner`'s lease on `resource` if it is still part of a cycle (re-read now)."""
    if not any(owner in cycle for cycle in find_wait_for_cycles(redis_client(), namespace)):
        logger.info("deadlock gone owner=%s resource=%s", owner, resource)
        return 0
    revoked = FairSemaphore(redis_client(), resource, namespace=namespace).revoke(owner)
    logger.warning("deadlock broken owner=%s resource=%s leases=%d", owner, resource, revoked)
    return revoked
