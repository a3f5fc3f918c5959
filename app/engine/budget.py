"""Budget enforcement: charge what an attempt spends as it goes, stop it when a limit is reached.

Every attempt has a `Meter`. The OpenCode driver reports the turn's running usage after each
model step (OpenCode's `step-finish` parts); the attempt lease reports agent time at each
heartbeat. Under a budget (the session's or the task's) each report is charged at once, in its
own transaction (task row, then session row: the engine's lock order), and a report that
reaches a limit stops the attempt (its cancel event), pauses the session with reason `budget`
and opens a `budget` approval. Without a budget nothing is charged until the outcome, which
adds what the attempt spent on its task and session in the outcome's transaction. So the
overshoot is at most what was spent between two reports: one model step, one heartbeat.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, text, update
from sqlalchemy.orm import Session as DbSession

from app.drivers.base import DriverJob, DriverResult
from app.extensions import db
from app.metrics import observe_spend
from app.services import budgets
from app.services.events import record_event
from models import SessionTask
from models.base import utcnow
from models.enums import SESSION_ACTIVE, SessionStatus, TaskStatus

from . import lifecycle
from .dispatch import Dispatch, dispatch_ready
from .locking import fenced, lock_session

logger = logging.getLogger(__name__)

BUDGET_REASON = "budget"
_tasks = SessionTask.__table__


_SPENT = (
    "spent_tokens = spent_tokens + :p_tokens, spent_cost_usd = spent_cost_usd + :p_cost,"
    " spent_agent_seconds = spent_agent_seconds + :p_seconds"
)
_FIGURES = "budget, spent_tokens, spent_cost_usd, spent_agent_seconds"
# One round trip: the task's figures, then its session's. The session's UPDATE reads the task's
# RETURNING, so PostgreSQL locks the task row first (the engine's order: task, then session).
_CHARGE = text(
    f"WITH t AS (UPDATE session_tasks SET {_SPENT} WHERE id = :p_task_id"
    f" RETURNING session_id, key, {_FIGURES}),"
    f" s AS (UPDATE sessions SET {_SPENT} WHERE id = (SELECT session_id FROM t)"
    f" RETURNING {_FIGURES}, status, pause_reason)"
    " SELECT t.key, t.budget AS t_budget, t.spent_tokens AS t_tokens,"
    " t.spent_cost_usd AS t_cost, t.spent_agent_seconds AS t_seconds, s.budget AS s_budget,"
    " s.spent_tokens AS s_tokens, s.spent_cost_usd AS s_cost,"
    " s.spent_agent_seconds AS s_seconds, s.status, s.pause_reason FROM t, s"
)


@dataclass(frozen=True)
class _Figures:
    budget: dict
    spent_tokens: int
    spent_cost_usd: float
    spent_agent_seconds: float


@dataclass
class Spend:
    """Tokens, cost (USD) and agent seconds."""

    tokens: int = 0
    cost: float = 0.0
    seconds: float = 0.0

    def __bool__(self) -> bool:
        return bool(self.tokens or self.cost or self.seconds)


@dataclass
class Verdict:
    """What a charge found: whether a budget is spent (and its figures for the approval)."""

    exhausted: bool = False
    figures: dict[str, Any] = field(default_factory=dict)


def charge(db: DbSession, job: DriverJob, spend: Spend, ahead: Spend | None = None) -> Verdict:
    """Add `spend` to the task's and the session's spent figures; emit `budget.warning` (80%)
    and `budget.exhausted` when a limit's share is reached now; say whether a budget is spent,
    or would be by `ahead` more (the next model step, if it is as large as the last one), or
    the session was already paused for one."""
    params = {"p_tokens": spend.tokens, "p_cost": spend.cost, "p_seconds": spend.seconds,
              "p_task_id": job.task_id}  # fmt: skip
    row = db.execute(_CHARGE, params).first()
    if row is None:
        return Verdict()
    task = _Figures(row.t_budget, row.t_tokens, row.t_cost, row.t_seconds)
    session = _Figures(row.s_budget, row.s_tokens, row.s_cost, row.s_seconds)
    status, pause_reason, key = SessionStatus(row.status), row.pause_reason, row.key
    if spend:
        observe_spend(job.session_id, job.agent.name, spend.tokens, spend.cost, spend.seconds)
    verdict = Verdict()
    for scope, figured in (("session", session), ("task", task)):
        limits = figured.budget or {}
        if not limits:
            continue
        after = budgets.spent_of(figured)
        before = {"tokens": after["tokens"] - spend.tokens,
                  "cost_usd": after["cost_usd"] - spend.cost,
                  "agent_seconds": after["agent_seconds"] - spend.seconds}  # fmt: skip
        figures = {"scope": scope, "spent": after, "limits": dict(limits)}
        shown = {**figures, "key": key} if scope == "task" else dict(figures)
        if scope == "task":
            figures.update(task_id=job.task_id, key=key)
        for limit in budgets.crossed(limits, before, after, budgets.WARNING_SHARE):
            record_event(db, job.session_id, "budget.warning", task_id=job.task_id,
                         limit=limit, **shown)  # fmt: skip
        for limit in budgets.crossed(limits, before, after):
            record_event(db, job.session_id, "budget.exhausted", task_id=job.task_id,
                         limit=limit, **shown)  # fmt: skip
        reached = budgets.exhausted(limits, after)
        if ahead and not reached:
            reached = budgets.exhausted(limits, {
                "tokens": after["tokens"] + ahead.tokens,
                "cost_usd": after["cost_usd"] + ahead.cost,
                "agent_seconds": after["agent_seconds"],
            })  # fmt: skip
            figures["next_step"] = {"tokens": ahead.tokens, "cost_usd": round(ahead.cost, 6)}
            for limit in reached:  # no room for the next step: as good as spent
                record_event(db, job.session_id, "budget.exhausted", task_id=job.task_id,
                             limit=limit, **shown, next_step=figures["next_step"])  # fmt: skip
        if reached and not verdict.exhausted:
            verdict = Verdict(True, {**figures, "reached": reached})
    if not verdict.exhausted and pause_reason == BUDGET_REASON:
        if status is SessionStatus.PAUSED:
            verdict = Verdict(True, {"scope": "session", "spent": budgets.spent_of(session),
                                     "limits": dict(session.budget or {})})  # fmt: skip
    return verdict


class Meter:
    """One attempt's spending: what the driver reported, what was charged, whether a spent
    budget interrupted it. Thread-safe: the driver and the lease heartbeat both report."""

    def __init__(self, job: DriverJob, cancel: threading.Event) -> None:
        self.job, self.cancel = job, cancel
        self.budgeted = job.budgeted
        self.reported = Spend()
        self.charged = Spend()
        self.last_charge = time.monotonic()
        self.interrupted: dict[str, Any] | None = None  # the spent budget's figures
        self.pause_only = False  # the outcome spent it: pause, the attempt already ended
        # The last model step's usage: the next one is expected to be as large, so a step that
        # would pass a limit is not let run (OpenCode starts it before the last one's report).
        self.last_step: Spend | None = None
        self._pauser: threading.Thread | None = None
        self._paused = threading.Event()
        self._lock = threading.Lock()

    def usage(self, tokens: dict[str, int], reported_cost: float) -> None:
        """The driver's running usage of this attempt (cumulative); charged under a budget."""
        cost = budgets.cost_of(self.job.agent.model, tokens, reported_cost)
        with self._lock:
            total = int(tokens.get("total", 0))
            step = Spend(total - self.reported.tokens, cost - self.reported.cost)
            if step.tokens > 0 or step.cost > 0:
                self.last_step = step
            self.reported = Spend(total, cost)
        if self.budgeted:
            self.charge_now()

    def heartbeat(self) -> None:
        """The lease renewed: charge agent time (and usage) under a budget."""
        if self.budgeted:
            self.charge_now()

    def before_start(self) -> bool:
        """Whether the attempt may start: under a budget, none of its budgets is spent."""
        if self.budgeted:
            self.charge_now()
        return self.interrupted is None

    def _take(self, final: Spend | None = None) -> Spend:
        with self._lock:
            now = time.monotonic()
            seen = final or self.reported
            delta = Spend(max(0, seen.tokens - self.charged.tokens),
                          max(0.0, seen.cost - self.charged.cost),
                          now - self.last_charge)  # fmt: skip
            self.last_charge = now
            self.charged = Spend(self.charged.tokens + delta.tokens,
                                 self.charged.cost + delta.cost,
                                 self.charged.seconds + delta.seconds)  # fmt: skip
            return delta

    def charge_now(self) -> None:
        """Charge what was spent since the last charge; interrupt the attempt when a budget
        is spent (pausing the session, in a transaction of its own)."""
        delta = self._take()
        try:
            with DbSession(bind=db.engine) as own, own.begin():
                verdict = charge(own, self.job, delta, self.last_step)
        except Exception:  # never break a heartbeat or a driver; the outcome charges the rest
            logger.exception("budget charge failed session_id=%s task_id=%s",
                             self.job.session_id, self.job.task_id)  # fmt: skip
            with self._lock:
                self.charged.tokens -= delta.tokens
                self.charged.cost -= delta.cost
                self.last_charge -= delta.seconds
            return
        if not verdict.exhausted:
            return
        with self._lock:  # the driver and the heartbeat may both see it: one interrupts
            if self.interrupted is not None:
                return
            self.interrupted = verdict.figures
            self._pauser = threading.Thread(target=self._pause, name="budget-pause", daemon=True)
        logger.info("budget spent, interrupting session_id=%s task_id=%s figures=%s",
                    self.job.session_id, self.job.task_id, verdict.figures)  # fmt: skip
        self._pauser.start()
        self.cancel.set()  # the driver aborts at once; the session pauses meanwhile

    def settle(self) -> None:
        """Wait for the session's pause that an interruption started (before recording it)."""
        if self._pauser is not None:
            self._paused.wait(60)
        after_outcome(self.job)

    def _pause(self) -> None:
        try:
            with DbSession(bind=db.engine) as own, own.begin():
                pause_for_budget(own, self.job.session_id, self.interrupted or {})
        except Exception:  # the outcome's charge pauses it then (`after_outcome`)
            logger.exception("budget pause failed session_id=%s", self.job.session_id)
            self.pause_only = True
        finally:
            self._paused.set()

    def remainder(self, outcome: DriverResult) -> Spend:
        """What the attempt spent that was not charged yet (its outcome is the final word)."""
        tokens = int(outcome.tokens.get("total", 0))
        cost = budgets.cost_of(self.job.agent.model, outcome.tokens, outcome.cost)
        return self._take(Spend(tokens, cost))


def outcome_spend(job: DriverJob, outcome: DriverResult, duration: float) -> Spend:
    """What an outcome adds to the spent figures: the meter's remainder, or all of it."""
    meter = job.meter
    if isinstance(meter, Meter):
        return meter.remainder(outcome)
    tokens = int(outcome.tokens.get("total", 0))
    return Spend(tokens, budgets.cost_of(job.agent.model, outcome.tokens, outcome.cost), duration)


def charge_outcome(db: DbSession, job: DriverJob, outcome: DriverResult, duration: float) -> None:
    """Charge an attempt's outcome; when it spent a budget, remember to pause the session
    after the commit (`after_outcome`): pausing locks every task, which must come first."""
    verdict = charge(db, job, outcome_spend(job, outcome, duration))
    if verdict.exhausted and isinstance(job.meter, Meter) and job.meter.interrupted is None:
        job.meter.interrupted = verdict.figures
        job.meter.pause_only = True


def after_outcome(job: DriverJob) -> None:
    """Pause the session of an attempt whose outcome spent a budget (its own transaction)."""
    meter = job.meter
    if isinstance(meter, Meter) and meter.pause_only:
        meter.pause_only = False
        with DbSession(bind=db.engine) as own, own.begin():
            pause_for_budget(own, job.session_id, meter.interrupted or {})


_INTERRUPT = (
    update(_tasks)
    .where(*fenced(TaskStatus.IN_PROGRESS))
    .values(
        status=TaskStatus.PAUSED,
        finished_at=bindparam("p_now"),
        result=bindparam("p_result", type_=_tasks.c.result.type),
        error=bindparam("p_error"),
        tokens=bindparam("p_tokens", type_=_tasks.c.tokens.type),
        cost=bindparam("p_cost"),
        executions=_tasks.c.executions - 1,  # an interruption uses up no attempt
    )
    .returning(_tasks.c.key)
)


def record_interrupted(
    db: DbSession, job: DriverJob, epoch: int, outcome: DriverResult, duration: float, token: int
) -> Dispatch | None:
    """Record an attempt that a spent budget stopped: interrupted, not the agent's failure
    (no failure streak, no attempt used); the task waits, paused, for the budget's decision,
    or runs again at once if the session was resumed (a raised budget) meanwhile."""
    outcome = outcome.storable()
    charge(db, job, outcome_spend(job, outcome, duration))
    reason = "Interrupted: a budget was spent"
    owned = db.execute(
        _INTERRUPT,
        {"p_task_id": job.task_id, "p_attempt": job.attempt, "p_token": token,
         "p_now": utcnow(), "p_result": outcome.as_dict(), "p_error": reason,
         "p_tokens": dict(outcome.tokens), "p_cost": outcome.cost},
    ).first()  # fmt: skip
    if owned is None:
        return None
    record_event(db, job.session_id, "task.interrupted", task_id=job.task_id,
                 agent_id=job.agent.id, key=owned.key, reason=BUDGET_REASON,
                 duration_s=round(duration, 3), figures=(job.meter.interrupted or {}))  # fmt: skip
    session = lock_session(db, job.session_id)
    if session.status not in SESSION_ACTIVE:
        return None
    paused = (_tasks.c.id == job.task_id, _tasks.c.status == TaskStatus.PAUSED)
    db.execute(update(_tasks).where(*paused).values(status=TaskStatus.PENDING))
    return dispatch_ready(db, session)


def pause_for_budget(db: DbSession, session_id: str, figures: dict[str, Any]) -> bool:
    """Pause an active session because a budget is spent and open a `budget` approval."""
    return lifecycle.pause_for(db, session_id, BUDGET_REASON, figures)
