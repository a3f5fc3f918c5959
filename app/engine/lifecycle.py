"""Session lifecycle actions: start, pause, resume, cancel, stop, retry, restore a checkpoint.

Every action locks the session's tasks and then its row (`locking`), checks the transition
table, changes task states (`transitions`) and bumps the epoch when in-flight work must be
fenced off. Actions that (re)start work return True; the
caller enqueues `sessions.launch` after commit. Running drivers notice through their lease
heartbeat that their task is no longer theirs, and stop.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from app.services import approvals
from app.services.errors import NotFound, ValidationFailed
from app.services.events import record_event
from app.workspaces import branch_exists, branch_name
from models import ApprovalKind, Checkpoint, InvalidTransition, Session, SessionTask
from models.base import utcnow
from models.enums import SESSION_TRANSITIONS, SessionStatus, TaskStatus

from . import transitions
from .locking import lock_session
from .worktrees import needs_worktree

S, T = SessionStatus, TaskStatus

# action -> (allowed from, target status, whether work (re)starts)
ACTIONS: dict[str, tuple[frozenset[SessionStatus], SessionStatus, bool]] = {
    "start": (frozenset({S.PENDING}), S.QUEUED, True),
    "pause": (frozenset({S.QUEUED, S.RUNNING, S.DEGRADED}), S.PAUSED, False),
    "resume": (frozenset({S.PAUSED, S.ORPHANED}), S.QUEUED, True),
    "cancel": (frozenset(s for s in S if S.CANCELLED in SESSION_TRANSITIONS[s]), S.CANCELLED,
               False),
    "stop": (frozenset({S.QUEUED, S.RUNNING, S.DEGRADED, S.PAUSED}), S.STOPPED, False),
    "retry": (frozenset({S.FAILED, S.TIMEOUT, S.STOPPED}), S.PENDING, True),
}  # fmt: skip


def allowed_actions(status: SessionStatus) -> list[str]:
    """The actions a session in `status` accepts."""
    return sorted(name for name, (sources, _, _) in ACTIONS.items() if status in sources)


def _lock(db: DbSession, session_id: str) -> Session:
    if db.get(Session, session_id) is None:  # before the graph cache reads its tasks
        raise NotFound(f"Session {session_id} not found.")
    return lock_session(db, session_id, all_tasks=True, load=True)


def _refuse(session: Session, action: str) -> InvalidTransition:
    target = ACTIONS[action][1].value
    error = InvalidTransition("session", session.status.value, target, [])
    error.args = (f"Cannot {action} a session that is {session.status.value}.",)
    error.allowed = allowed_actions(session.status)
    return error


def _set_tasks(db: DbSession, session_id: str, change: transitions.BulkChange, **values) -> int:
    return len(change.apply(db, SessionTask.session_id == session_id, **values))


def apply_action(db: DbSession, session_id: str, action: str) -> tuple[Session, bool]:
    """Apply a lifecycle action; return the session and whether a launch must be enqueued."""
    if action not in ACTIONS:
        raise NotFound(f"Unknown action '{action}'.")
    session = _lock(db, session_id)
    sources, target, launches = ACTIONS[action]
    if session.status not in sources:
        raise _refuse(session, action)
    if action in ("cancel", "stop"):
        _halt(db, session, target)
    elif action == "pause":
        session.transition_to(target)
        _set_tasks(db, session.id, transitions.PAUSE)
    elif action == "resume":
        session.transition_to(target)
        session.pause_reason = None
        _set_tasks(db, session.id, transitions.RESUME)
    elif action == "retry":
        _reset_for_retry(db, session)
        session.transition_to(S.PENDING)
        session.transition_to(S.QUEUED)
    else:
        session.transition_to(target)
    record_event(db, session.id, f"session.{action}", status=session.status.value)
    return session, launches


def _halt(db: DbSession, session: Session, target: SessionStatus) -> None:
    """Cancel ends every unfinished task; stop and timeout put them back to pending."""
    session.epoch += 1
    if target is S.CANCELLED:
        _set_tasks(db, session.id, transitions.CANCEL, finished_at=utcnow())
        approvals.withdraw(db, session.id, "The session was cancelled.")
    else:
        _set_tasks(db, session.id, transitions.HALT)
    session.transition_to(target)


def pause_for(db: DbSession, session_id: str, reason: str, figures: dict) -> bool:
    """Pause an active session for `reason` (`budget`: a budget is spent) and open the
    approval that resumes it; False if it was not active (already paused, say)."""
    session = _lock(db, session_id)
    if session.status not in ACTIONS["pause"][0]:
        return False
    session.transition_to(S.PAUSED)
    session.pause_reason = reason
    _set_tasks(db, session.id, transitions.PAUSE)
    record_event(db, session.id, "session.pause", status=session.status.value, reason=reason,
                 figures=figures)  # fmt: skip
    approvals.open_approval(db, session.id, ApprovalKind(reason), figures=figures,
                            policy=session.approval_policy)  # fmt: skip
    return True


def time_out(db: DbSession, session_id: str) -> bool:
    """End an active or paused session that ran past its max duration; True if it did."""
    session = _lock(db, session_id)
    if S.TIMEOUT not in SESSION_TRANSITIONS[session.status] or session.started_at is None:
        return False
    elapsed = (utcnow() - session.started_at).total_seconds()
    if elapsed < session.max_duration_seconds:
        return False
    _halt(db, session, S.TIMEOUT)
    session.error = f"Ran longer than max_duration_seconds={session.max_duration_seconds}."
    record_event(db, session.id, "session.timeout", elapsed_s=round(elapsed, 1))
    return True


def _rerun_lost_branches(db: DbSession, session: Session) -> list[str]:
    """Completed tasks whose git branch was cleaned up since (the worktree clean-up beat job)
    run again, so that an integration step never merges a branch that is gone."""
    if not needs_worktree(session.workdir or ""):
        return []
    completed = db.execute(
        select(SessionTask.id, SessionTask.key, SessionTask.branch, SessionTask.action).where(
            SessionTask.session_id == session.id, SessionTask.status == T.COMPLETED
        )
    ).all()
    integration = branch_name(session.id, "integration")
    gone = [
        task
        for task in completed
        if (task.branch or (integration if task.action == "integrate" else None))
        and not branch_exists(session.workdir, task.branch or integration)
    ]
    if gone:
        transitions.RERUN_LOST_BRANCH.apply(
            db, SessionTask.id.in_([task.id for task in gone]),
            executions=0, result=None, error=None, finished_at=None, branch=None,
        )  # fmt: skip
        keys = sorted(task.key for task in gone)
        record_event(db, session.id, "session.branches_lost", rerun=keys,
                     reason="their branches were cleaned up")  # fmt: skip
    return [task.id for task in gone]


def _reset_for_retry(db: DbSession, session: Session) -> None:
    """Failed, cancelled and skipped tasks run again with a fresh budget of executions;
    completed ones never. Attempt numbers keep growing, so no old attempt still running can
    pass for a new one: its next lease renewal fails and its driver stops."""
    _set_tasks(db, session.id, transitions.RETRY, executions=0, error=None, finished_at=None)
    _rerun_lost_branches(db, session)
    session.error = None
    session.finished_at = None


def restore_checkpoint(db: DbSession, session_id: str, checkpoint_id: int) -> Session:
    """Return a stopped, failed, timed-out or paused session to the state of a checkpoint.

    Tasks completed at or before the checkpoint keep their results; every other task runs
    again. The session is queued; the caller enqueues its launch.
    """
    session = _lock(db, session_id)
    checkpoint = db.get(Checkpoint, checkpoint_id)
    if checkpoint is None or checkpoint.session_id != session_id:
        raise NotFound(f"Checkpoint {checkpoint_id} of session {session_id} not found.")
    if session.status not in (S.FAILED, S.TIMEOUT, S.STOPPED, S.PAUSED):
        error = InvalidTransition("session", session.status.value, S.QUEUED.value, [])
        error.args = (f"Cannot restore a session that is {session.status.value}.",)
        error.allowed = allowed_actions(session.status)
        raise error
    kept = set(
        db.scalars(
            select(Checkpoint.task_id).where(
                Checkpoint.session_id == session_id,
                Checkpoint.sequence <= checkpoint.sequence,
                Checkpoint.kind == "task",
                Checkpoint.data["status"].astext == T.COMPLETED.value,
            )
        )
    )
    if not kept and checkpoint.kind != "task":
        raise ValidationFailed("That checkpoint records no completed task to restore to.")
    session.epoch += 1
    transitions.RESTORE.apply(
        db,
        SessionTask.session_id == session_id,
        SessionTask.id.not_in(kept or [""]),
        executions=0, result=None, error=None, finished_at=None,
    )  # fmt: skip
    _rerun_lost_branches(db, session)
    if session.status is not S.PAUSED:
        session.transition_to(S.PENDING)
    session.transition_to(S.QUEUED)
    session.error = None
    session.finished_at = None
    record_event(db, session.id, "session.restored", checkpoint_id=checkpoint_id,
                 sequence=checkpoint.sequence, kept=len(kept))  # fmt: skip
    return session
