"""Maintenance rules behind the beat jobs: agent health, retention of checkpoints and events of
finished sessions, worktree clean-up, and breaking wait-for cycles between lock owners.

Each `*_due` function finds the ids a beat job fans out; each per-id function re-checks its
condition under a row lock, so a duplicated or late task changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import and_, delete, exists, or_, select
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import aliased

import app.drivers.endpoints as endpoints
from app.drivers.opencode_client import OpenCodeClient, Timeouts
from app.workspaces import remove_worktrees
from models import Agent, Checkpoint, Session, SessionEvent
from models.base import utcnow
from models.enums import SESSION_FINISHED, AgentStatus, SessionStatus

from .agents import note_if_available
from .events import record_event

logger = logging.getLogger(__name__)

S = SessionStatus
CHECKED_STATUSES = (AgentStatus.ACTIVE, AgentStatus.UNHEALTHY)
# Sessions that can run again (retry resumes from their checkpoints and branches).
RETRYABLE = (S.FAILED, S.TIMEOUT, S.STOPPED)
CLEANED_EVENT = "workspace.cleaned"


# -- agent health ---------------------------------------------------------------------------
@dataclass(frozen=True)
class HealthPolicy:
    heartbeat_timeout: timedelta = timedelta(minutes=2)
    failures_before_unhealthy: int = 2


def probe(driver: str, endpoint: str | None, config: dict, timeout: float = 5.0) -> str | None:
    """Why an OpenCode server is not healthy (GET /global/health, no redirects followed), or
    None when it is. The reason is a fixed short text: nothing the server answered is copied."""
    if not endpoint:
        return "no endpoint configured"
    if endpoint == endpoints.LOCAL:  # a host-free profile: probe this worker's server, if any
        endpoint = endpoints.worker_server()
        if endpoint is None:
            return None  # nothing to probe here; its tasks' outcomes still count
    if endpoints.refusal(endpoint):
        return "endpoint not allowed by AGENT_ENDPOINT_ALLOW"
    client = OpenCodeClient(endpoint, username=config.get("username"),
                            password=config.get("password"), retry_attempts=1,
                            timeouts=Timeouts(connect=timeout, health=timeout))  # fmt: skip
    try:
        return client.health_problem()
    except Exception as error:  # any failure to answer is the finding, not a crash
        return f"health check failed ({type(error).__name__})"
    finally:
        client.close()


def agents_due_for_health_check(db: DbSession) -> list[str]:
    """Agents that health checks watch: not in maintenance, not switched off (inactive)."""
    query = select(Agent.id).where(Agent.maintenance.is_(False), Agent.status.in_(CHECKED_STATUSES))
    return list(db.scalars(query.order_by(Agent.name)))


def probe_target(db: DbSession, agent_id: str) -> tuple[str, str | None, dict] | None:
    """(driver, endpoint, config) of an agent to probe outside any transaction, or None."""
    agent = db.get(Agent, agent_id)
    if agent is None:
        return None
    return agent.driver.value, agent.endpoint, dict(agent.config or {})


def record_health(
    db: DbSession, agent_id: str, probe_error: str | None, probed: bool, policy: HealthPolicy
) -> AgentStatus | None:
    """Apply one health check: a probe error or a stale heartbeat counts as a failure; enough
    failures in a row make the agent unhealthy, and one success makes it active again."""
    agent = db.get(Agent, agent_id, with_for_update={"key_share": True}, populate_existing=True)
    if agent is None or agent.maintenance or agent.status not in CHECKED_STATUSES:
        return None
    now = utcnow()
    if probed and probe_error is None:
        agent.last_heartbeat_at = now
    problem = probe_error
    if problem is None and agent.last_heartbeat_at is not None:
        silent = now - agent.last_heartbeat_at
        if silent > policy.heartbeat_timeout:
            problem = f"no heartbeat for {int(silent.total_seconds())}s"
    before = agent.status
    if problem is None:
        agent.consecutive_failures = 0
        agent.status, agent.health_reason = AgentStatus.ACTIVE, None
    else:
        agent.consecutive_failures += 1
        if agent.consecutive_failures >= policy.failures_before_unhealthy:
            agent.status, agent.health_reason = AgentStatus.UNHEALTHY, problem[:1000]
    if agent.status != before:
        logger.warning("agent_health agent_id=%s name=%s status=%s reason=%s", agent.id,
                       agent.name, agent.status.value, agent.health_reason)  # fmt: skip
        note_if_available(db, agent, None)  # health restored: it may take blocked tasks
    return agent.status


# -- retention ------------------------------------------------------------------------------
def _spare_checkpoint(retryable):
    """A checkpoint retention may delete: in a session that can run again (`retryable`, a bool
    or a SQL condition), an older one of the same task; otherwise any but the newest."""
    newer = aliased(Checkpoint)
    newer_of_session = (newer.session_id == Checkpoint.session_id,
                        newer.sequence > Checkpoint.sequence)  # fmt: skip
    same_task_newer = exists().where(*newer_of_session, newer.task_id == Checkpoint.task_id)
    any_newer = exists().where(*newer_of_session)
    if isinstance(retryable, bool):
        return same_task_newer if retryable else any_newer
    return or_(and_(retryable, same_task_newer), and_(~retryable, any_newer))


def sessions_due_for_retention(db: DbSession, older_than: timedelta, limit: int = 500) -> list[str]:
    """Finished sessions older than `older_than` that still have events or spare checkpoints."""
    has_events = exists().where(
        SessionEvent.session_id == Session.id, SessionEvent.type != CLEANED_EVENT
    )
    has_spare = exists().where(
        Checkpoint.session_id == Session.id, _spare_checkpoint(Session.status.in_(RETRYABLE))
    )
    query = (
        select(Session.id)
        .where(Session.status.in_(SESSION_FINISHED), Session.finished_at < utcnow() - older_than)
        .where(or_(has_events, has_spare))
        .order_by(Session.finished_at)
        .limit(limit)
    )
    return list(db.scalars(query))


def prune_session(db: DbSession, session_id: str, older_than: timedelta) -> dict[str, int]:
    """Delete a finished session's events and superseded checkpoints, if still due."""
    session = db.get(
        Session, session_id, with_for_update={"key_share": True}, populate_existing=True
    )
    if (
        session is None
        or session.status not in SESSION_FINISHED
        or session.finished_at is None
        or session.finished_at >= utcnow() - older_than
    ):
        return {"events": 0, "checkpoints": 0}
    events = db.execute(
        delete(SessionEvent).where(
            SessionEvent.session_id == session_id, SessionEvent.type != CLEANED_EVENT
        )
    ).rowcount
    spare = _spare_checkpoint(session.status in RETRYABLE)
    checkpoints = db.execute(
        delete(Checkpoint)
        .where(Checkpoint.session_id == session_id, spare)
        .execution_options(synchronize_session=False)
    ).rowcount
    logger.info("retention session_id=%s events=%d checkpoints=%d", session_id, events, checkpoints)
    return {"events": events, "checkpoints": checkpoints}


# -- worktrees ------------------------------------------------------------------------------
def _finished_long_enough(grace: timedelta, retryable_grace: timedelta):
    now = utcnow()
    return or_(
        and_(Session.status.in_(RETRYABLE), Session.finished_at < now - retryable_grace),
        and_(
            Session.status.in_([s for s in SESSION_FINISHED if s not in RETRYABLE]),
            Session.finished_at < now - grace,
        ),
    )


def sessions_due_for_worktree_cleanup(
    db: DbSession, grace: timedelta, retryable_grace: timedelta, limit: int = 200
) -> list[str]:
    """Finished sessions past their grace period whose worktrees were not cleaned yet."""
    cleaned = exists().where(
        SessionEvent.session_id == Session.id, SessionEvent.type == CLEANED_EVENT
    )
    query = (
        select(Session.id)
        .where(Session.workdir.is_not(None), ~cleaned)
        .where(_finished_long_enough(grace, retryable_grace))
        .order_by(Session.finished_at)
        .limit(limit)
    )
    return list(db.scalars(query))


def clean_worktrees(
    db: DbSession, session_id: str, grace: timedelta, retryable_grace: timedelta
) -> list[str] | None:
    """Remove a finished session's task worktrees and branches (under its row lock, so a retry
    cannot start meanwhile); return the branches removed, or None when nothing was due."""
    session = db.get(
        Session, session_id, with_for_update={"key_share": True}, populate_existing=True
    )
    if session is None:
        return None
    still_due = db.scalar(
        select(Session.id).where(
            Session.id == session_id, _finished_long_enough(grace, retryable_grace)
        )  # fmt: skip
    )
    already = db.scalar(
        select(SessionEvent.id).where(
            SessionEvent.session_id == session_id, SessionEvent.type == CLEANED_EVENT
        )
    )
    if still_due is None or already is not None:
        return None
    branches: list[str] = []
    repo = Path(session.workdir or "")
    if session.workdir and (repo / ".git").exists():
        branches = remove_worktrees(repo, session_id)
    record_event(db, session_id, CLEANED_EVENT, branches=branches)
    return branches


# -- wait-for cycles ------------------------------------------------------------------------
def deadlock_victims(graph, cycles: list[list[str]]) -> list[tuple[str, str]]:
    """(owner, resource) to revoke so that each cycle breaks: the member whose name sorts last
    (so every run picks the same one) gives up what its predecessor in the cycle waits for."""
    victims = []
    for cycle in cycles:
        victim = max(cycle)
        waiter = cycle[cycle.index(victim) - 1]
        victims.append((victim, graph.edges[waiter, victim]["resource"]))
    return sorted(set(victims))
