"""Changes of many tasks at once, with source sets taken from the task transition table.

Each bulk change names the statuses it is meant to move (`among`); the UPDATE only touches
rows whose current status may go to the target by `TASK_TRANSITIONS` (rows already in the
target may be rewritten, which is no transition). `tests/unit/test_transitions.py` checks
that every intended edge of every change below is in the table, so none is dropped unseen.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.orm import Session as DbSession

from models import SessionTask
from models.enums import TASK_FINISHED, TASK_TRANSITIONS, TaskStatus

T = TaskStatus
UNFINISHED = frozenset(status for status in T if status not in TASK_FINISHED)
_tasks = SessionTask.__table__


def sources_of(target: TaskStatus) -> frozenset[TaskStatus]:
    """Every status the transition table lets go to `target`."""
    return frozenset(status for status in T if target in TASK_TRANSITIONS[status])


@dataclass(frozen=True)
class BulkChange:
    """A named change of several tasks to `target` from the statuses in `among`."""

    name: str
    target: TaskStatus
    among: frozenset[TaskStatus]

    @property
    def sources(self) -> frozenset[TaskStatus]:
        """The statuses the UPDATE really moves: `among`, as far as the table allows."""
        return frozenset(self.among & (sources_of(self.target) | {self.target}))

    def apply(self, db: DbSession, *where, **values) -> list[str]:
        """Run the change on the tasks matching `where`; return the ids it changed."""
        statement = (
            update(_tasks)
            .where(*where, _tasks.c.status.in_(self.sources))
            .values(status=self.target, **values)
            .returning(_tasks.c.id)
        )
        return list(db.scalars(statement))


def _change(name: str, target: TaskStatus, *among: TaskStatus) -> BulkChange:
    return BulkChange(name, target, frozenset(among))


PAUSE = _change("pause", T.PAUSED, T.PENDING, T.READY, T.BLOCKED)
RESUME = _change("resume", T.PENDING, T.PAUSED)
CANCEL = _change("cancel", T.CANCELLED, *UNFINISHED)
HALT = _change("stop or timeout", T.PENDING, *UNFINISHED)
RETRY = _change("retry", T.PENDING, *UNFINISHED, T.FAILED, T.CANCELLED, T.SKIPPED)
RESTORE = _change("restore", T.PENDING, *T)
REQUEUE = _change("launch requeue", T.PENDING, T.READY, T.BLOCKED, T.ASSIGNED, T.IN_PROGRESS)
MARK_READY = _change("dispatch", T.READY, T.PENDING)
SKIP = _change("skip unreachable", T.SKIPPED, T.PENDING, T.READY)
RERUN_LOST_BRANCH = _change("re-run a completed task whose branch is gone", T.PENDING, T.COMPLETED)
AWAIT_APPROVAL = _change("gate", T.AWAITING_APPROVAL, T.PENDING)

BULK_CHANGES = (
    PAUSE, RESUME, CANCEL, HALT, RETRY, RESTORE, REQUEUE, MARK_READY, SKIP, RERUN_LOST_BRANCH,
    AWAIT_APPROVAL,
)  # fmt: skip
