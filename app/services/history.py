"""Read a session's history: checkpoints, events and its tree of child sessions."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from models import Checkpoint, Session

from .errors import NotFound

MAX_TREE_NODES = 10000


def _require(db: DbSession, session_id: str) -> Session:
    session = db.get(Session, session_id)
    if session is None:
        raise NotFound(f"Session {session_id} not found.")
    return session


def list_checkpoints(db: DbSession, session_id: str) -> list[Checkpoint]:
    """A session's checkpoints by sequence."""
    _require(db, session_id)
    query = select(Checkpoint).where(Checkpoint.session_id == session_id)
    return list(db.scalars(query.order_by(Checkpoint.sequence)))


def session_tree(db: DbSession, session_id: str) -> dict:
    """The session and its descendants as nested dicts (breadth-first, bounded)."""
    root = _require(db, session_id)
    nodes = {root.id: {"id": root.id, "title": root.title, "status": root.status, "children": []}}
    frontier = [root.id]
    while frontier and len(nodes) < MAX_TREE_NODES:
        children = db.execute(
            select(Session.id, Session.title, Session.status, Session.parent_id)
            .where(Session.parent_id.in_(frontier))
            .order_by(Session.created_at)
        ).all()
        frontier = []
        for child_id, title, status, parent_id in children:
            if child_id in nodes:
                continue
            node = {"id": child_id, "title": title, "status": status, "children": []}
            nodes[child_id] = node
            nodes[parent_id]["children"].append(node)
            frontier.append(child_id)
    return nodes[root.id]
