"""Runs of beat (maintenance) jobs: each run is recorded in `beat_job_runs` with its outcome.

Wrap a beat task's body with `@beat_job("task.name")` (or `with recorded_run("task.name") as
details:`): a row is committed as `running` when the run starts, and finished as `ok` (with the
details the body returned or set) or `failed` (with the error), so the API shows every job's
last run even when a worker died in the middle of one. Job names are the Celery task names.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session as DbSession

from app.extensions import db
from app.metrics import observe_beat_job
from models import BeatJobRun
from models.base import utcnow

logger = logging.getLogger(__name__)



def start_run(db_session: DbSession, job: str) -> BeatJobRun:
    """Insert a `running` row for one run of `job`."""
    run = BeatJobRun(job=job, outcome="running", details={})
    db_session.add(run)
    db_session.flush()
    return run


def finish_run(db_session: DbSession, run_id: int, outcome: str, details: dict) -> None:
    """Mark a run finished with its outcome and details."""
    db_session.execute(
        update(BeatJobRun)
        .where(BeatJobRun.id == run_id)
        .values(outcome=outcome, details=details, finished_at=utcnow())
    )


def latest_runs(db_session: DbSession) -> dict[str, BeatJobRun]:
    """The newest run of every job that ever ran, by job name."""
    newest = select(func.max(BeatJobRun.id)).group_by(BeatJobRun.job)
    query = select(BeatJobRun).where(BeatJobRun.id.in_(newest))
    return {run.job: run for run in db_session.scalars(query)}


def last_finished(db_session: DbSession, outcome: str) -> dict[str, Any]:
    """When each job last finished with `outcome`."""
    rows = db_session.execute(
        select(BeatJobRun.job, func.max(BeatJobRun.finished_at))
        .where(BeatJobRun.outcome == outcome)
        .group_by(BeatJobRun.job)
    )
    return dict(rows.all())


def list_runs(db_session: DbSession, job: str, limit: int = 50) -> list[BeatJobRun]:
    """The newest runs of one job, newest first."""
    query = (
        select(BeatJobRun)
        .where(BeatJobRun.job == job)
        .order_by(BeatJobRun.started_at.desc(), BeatJobRun.id.desc())
        .limit(limit)
    )
    return list(db_session.scalars(query))


def prune_runs(db_session: DbSession, older_than: timedelta) -> int:
    """Delete runs older than `older_than`, keeping each job's newest run; return the count."""
    newest = select(func.max(BeatJobRun.id)).group_by(BeatJobRun.job)
    result = db_session.execute(
        delete(BeatJobRun).where(
            BeatJobRun.started_at < utcnow() - older_than, BeatJobRun.id.not_in(newest)
        )
    )
    return result.rowcount


def overview(db_session: DbSession, schedule: dict) -> list[dict]:
    """Every scheduled or recorded job with its schedule, last run, last success and failure."""
    latest = latest_runs(db_session)
    successes, failures = last_finished(db_session, "ok"), last_finished(db_session, "failed")
    entries = {entry["task"]: (name, entry) for name, entry in schedule.items()}
    jobs = []
    for job in sorted(set(entries) | set(latest)):
        name, entry = entries.get(job, (None, {}))
        every = entry.get("schedule")
        seconds = every.total_seconds() if hasattr(every, "total_seconds") else every
        jobs.append({
            "job": job,
            "entry": name,
            "schedule": None if every is None else str(every),
            "schedule_seconds": float(seconds) if isinstance(seconds, int | float) else None,
            "options": {**dict(entry.get("kwargs") or {})},
            "last_run": latest.get(job),
            "last_success_at": successes.get(job),
            "last_failure_at": failures.get(job),
        })  # fmt: skip
    return jobs


def _in_own_transaction(step: Callable[[DbSession], Any]) -> Any:
    """Run `step` in a short transaction of its own, apart from the job's work."""
    with DbSession(bind=db.engine, expire_on_commit=False) as session, session.begin():
        return step(session)


@contextlib.contextmanager
def recorded_run(job: str) -> Iterator[dict]:
    """Record one run of `job`; the body fills the yielded dict with what it did."""
    started = time.monotonic()
    run_id = _in_own_transaction(lambda s: start_run(s, job).id)
    details: dict = {}
    try:
        yield details
    except Exception as error:
        details["error"] = f"{type(error).__name__}: {str(error)[:500]}"
        _finish(job, run_id, "failed", details, started)
        raise
    _finish(job, run_id, "ok", details, started)


def _finish(job: str, run_id: int, outcome: str, details: dict, started: float) -> None:
    duration = time.monotonic() - started
    details = {**details, "duration_s": round(duration, 3)}
    try:
        _in_own_transaction(lambda s: finish_run(s, run_id, outcome, details))
    except Exception:  # the job's own outcome matters more than its record
        logger.exception("beat job run not recorded job=%s run_id=%s", job, run_id)
    observe_beat_job(job, outcome, duration)
    log = logger.warning if outcome == "failed" else logger.info
    log("beat_job job=%s outcome=%s run_id=%s details=%s", job, outcome, run_id, details)


def beat_job(job: str) -> Callable:
    """Decorate a beat task body: record its run; a returned dict becomes the run's details."""

    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            with recorded_run(job) as details:
                result = function(*args, **kwargs)
                if isinstance(result, dict):
                    details.update(result)
                elif result is not None:
                    details["result"] = result
                return result

        return wrapper

    return decorate
