"""Where an attempt works: its own git worktree when the session's workdir is a repository."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from app.drivers.base import DriverJob, DriverResult
from app.workspaces import WorkspaceError, branch_name, commit_all, create_worktree


def needs_worktree(workdir: str) -> bool:
    """Whether tasks of a session with this workdir work in their own git worktree."""
    return bool(workdir) and (Path(workdir) / ".git").exists()


def prepare(job: DriverJob) -> tuple[DriverJob, str | None]:
    """The job moved into its own worktree and branch, when the session's workdir is a git
    repository and the task runs on an agent; else the job as it is and no branch."""
    if not job.agent.id or not needs_worktree(job.workdir):
        return job, None
    worktree = create_worktree(job.workdir, job.session_id, job.task_key, base=job.base_ref)
    return replace(job, workdir=str(worktree)), branch_name(job.session_id, job.task_key)


def commit(job: DriverJob, outcome: DriverResult) -> DriverResult:
    """Commit what the task changed on its branch, so an integration step can merge it."""
    try:
        made = commit_all(job.workdir, f"{job.task_key}: {job.title}")
    except WorkspaceError as error:
        return replace(outcome, succeeded=False, error=f"Could not commit the worktree: {error}")
    return replace(outcome, summary=outcome.summary or f"commit {made or 'none'}")
