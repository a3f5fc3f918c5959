"""Gates: a task with `requires_approval` waits, `awaiting_approval`, once its dependencies
are done, until a person approves it (app/engine/approvals.py). Called by dispatch, under the
session lock, with the runs it is about to mark ready."""

from __future__ import annotations

import networkx as nx
from sqlalchemy.orm import Session as DbSession

from app.services import approvals
from models import ApprovalKind, Session, SessionTask

from .locking import LockedSession
from .transitions import AWAIT_APPROVAL

_tasks = SessionTask.__table__


def hold_gated(
    db: DbSession, session: Session | LockedSession, graph: nx.DiGraph, runs: list[list[str]]
) -> list[list[str]]:
    """The runs without gated tasks that are not approved yet: a run stops before one; one at
    the head of its run (its dependencies are done) goes to `awaiting_approval` with a `gate`
    approval showing its predecessors' outputs; one further down stays pending."""
    gated = graph.graph["gated"] & {tid for run in runs for tid in run}
    if not gated:
        return runs
    held = gated - approvals.approved_tasks(db, sorted(gated))
    if not held:
        return runs
    kept, waiting = [], []
    for run in runs:
        cut = next((i for i, tid in enumerate(run) if tid in held), None)
        if cut is None:
            kept.append(run)
            continue
        if cut:
            kept.append(run[:cut])
        else:
            waiting.append(run[0])
    if waiting:
        AWAIT_APPROVAL.apply(db, _tasks.c.id.in_(waiting))
        policy = _policy(db, session)
        for task_id in waiting:
            figures = approvals.gate_figures(db, list(graph.pred[task_id]))
            figures["key"] = graph.nodes[task_id]["key"]
            approvals.open_approval(db, session.id, ApprovalKind.GATE, task_id=task_id,
                                    figures=figures, policy=policy)  # fmt: skip
    return kept


def _policy(db: DbSession, session: Session | LockedSession) -> dict:
    if isinstance(session, Session):
        return session.approval_policy or {}
    return db.get(Session, session.id).approval_policy or {}
