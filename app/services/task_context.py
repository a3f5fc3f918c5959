"""Task outputs as session context: each task's output is written as `tasks.<key>` and its
successors receive their predecessors' outputs (and the session's shared entries) in their
prompts. Both run on every DAG hop, so each is one statement in the common case."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, bindparam, insert, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session as DbSession

from models import Context, ContextVersion
from models.base import utcnow

from . import context_values
from .contexts import write_entry

TASK_PREFIX = "tasks."
# Room kept in a task's context budget for the "truncated" and "omitted" markers.
MARKER_CHARS = 48


def _upsert_statement():
    """Insert the entry or write a new version on top, unless the value is unchanged or a
    manual merge is pending; either way the history row comes from the same statement."""
    values = {"scope": "session", "owner_id": bindparam("p_owner"), "key": bindparam("p_key"),
              "value": bindparam("p_value", type_=Context.value.type), "version": 1,
              "source": bindparam("p_source"), "created_at": bindparam("p_now"),
              "updated_at": bindparam("p_now")}  # fmt: skip
    new = pg_insert(Context.__table__).values(values)
    written = (
        new.on_conflict_do_update(
            index_elements=[Context.scope, Context.owner_id, Context.key],
            set_={
                "value": new.excluded.value,
                "version": Context.version + 1,
                "source": new.excluded.source,
                "updated_at": new.excluded.updated_at,
            },
            where=and_(
                Context.pending_merge.is_(None), Context.value.is_distinct_from(new.excluded.value)
            ),
        )  # fmt: skip
        .returning(Context.id, Context.version, Context.value, Context.source)
        .cte("written")
    )
    history = select(
        written.c.id, written.c.version, written.c.value, literal("last_write_wins"),
        written.c.source, literal([], ContextVersion.conflicts.type), bindparam("p_now"),
    )  # fmt: skip
    columns = ["context_id", "version", "value", "strategy", "source", "conflicts", "created_at"]
    return (
        insert(ContextVersion.__table__)
        .from_select(columns, history)
        .returning(ContextVersion.version)
    )


_UPSERT = _upsert_statement()
_SESSION_ENTRIES = (
    select(Context.key, Context.value)
    .where(Context.scope == "session", Context.owner_id == bindparam("p_owner"))
    .order_by(Context.key)
)


def record_task_output(db: DbSession, session_id: str, task_key: str, result: dict) -> None:
    """Store a task's summary and changed files as session context `tasks.<key>` (idempotent:
    the same output again writes no version)."""
    output = {
        "summary": result.get("summary") or "",
        "files_changed": list(result.get("files_changed") or []),
        "succeeded": result.get("succeeded"),
    }
    key, source = TASK_PREFIX + task_key, f"task:{task_key}"
    params = {"p_owner": session_id, "p_key": key, "p_value": output, "p_source": source,
              "p_now": utcnow()}  # fmt: skip
    if db.execute(_UPSERT, params).first() is None:
        # Unchanged, or a manual merge is pending: the general write settles both cases.
        write_entry(db, "session", session_id, key, output, source=source)


def context_for_task(
    db: DbSession, session_id: str, predecessor_keys: list[str], budget_chars: int = 8000
) -> dict:
    """What a task receives: its predecessors' outputs and the session's other entries, trimmed.

    Returns {"predecessors": {key: output}, "session": {key: value}, "truncated": bool} and,
    when entries had to be left out, "omitted" (how many). Far predecessors and session
    entries are dropped last-first only after every value has been shortened.
    """
    entries = {key: value for key, value in db.execute(_SESSION_ENTRIES, {"p_owner": session_id})}
    predecessors = {
        key: entries[TASK_PREFIX + key] for key in predecessor_keys if TASK_PREFIX + key in entries
    }
    shared = {key: value for key, value in entries.items() if not key.startswith(TASK_PREFIX)}
    sections = {"predecessors": predecessors, "session": shared}
    drop = [("session", key) for key in reversed(list(shared))]
    drop += [("predecessors", key) for key in reversed(list(predecessors))]
    fitted, omitted = context_values.fit(sections, max(0, budget_chars - MARKER_CHARS), drop)
    truncated = fitted != sections
    result: dict[str, Any] = {**fitted, "truncated": truncated}
    if omitted:
        result["omitted"] = len(omitted)
    return result
