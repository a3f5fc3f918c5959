"""Where an attempt works: its own git worktree when the session's workdir is a repository,
or when the session names a `repository` URL (a worktree of this host's mirror of it)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from flask import current_app

from app.drivers.base import DriverJob, DriverResult
from app.workspaces import (
    INTEGRATION_KEY,
    RemoteUnavailable,
    WorkspaceError,
    branch_name,
    commit_all,
    create_remote_worktree,
    create_worktree,
    push_branch,
    remove_remote_worktree,
    repository_url_problem,
)

logger = logging.getLogger(__name__)


def needs_worktree(workdir: str) -> bool:
    """Whether tasks of a session with this workdir (or repository URL) work in their own
    git worktree."""
    if not workdir:
        return False
    if not workdir.startswith("/"):
        return repository_url_problem(workdir) is None
    return (Path(workdir) / ".git").exists()


def workspace_root() -> str:
    """This worker's WORKSPACE_ROOT: where its mirrors and their worktrees live."""
    return current_app.config["WORKSPACE_ROOT"]


def prepare(job: DriverJob) -> tuple[DriverJob, str | None]:
    """The job moved into its own worktree and branch, when the task runs on an agent and the
    session names a repository or its workdir is a git repository; else the job as it is."""
    if not job.agent.id:
        return job, None
    branch = branch_name(job.session_id, job.task_key)
    if job.repository:
        integration = branch_name(job.session_id, INTEGRATION_KEY)
        worktree = create_remote_worktree(
            job.repository, workspace_root(), job.session_id, job.task_key,
            base_branch=job.repository_branch,
            after=integration if job.base_ref == integration else None,
        )  # fmt: skip
        return replace(job, workdir=str(worktree)), branch
    if not needs_worktree(job.workdir):
        return job, None
    worktree = create_worktree(job.workdir, job.session_id, job.task_key, base=job.base_ref)
    return replace(job, workdir=str(worktree)), branch


def commit(job: DriverJob, outcome: DriverResult) -> DriverResult:
    """Commit what the task changed on its branch, so an integration step can merge it; for
    a repository session, push the branch (the task's result) and drop the worktree."""
    try:
        made = commit_all(job.workdir, f"{job.task_key}: {job.title}")
        if job.repository:
            push_branch(job.workdir, branch_name(job.session_id, job.task_key))
    except RemoteUnavailable as error:
        return replace(outcome, succeeded=False, retryable=True,
                       error=f"Could not push the task's branch: {error}")  # fmt: skip
    except WorkspaceError as error:
        return replace(outcome, succeeded=False, error=f"Could not commit the worktree: {error}")
    if job.repository:
        try:
            remove_remote_worktree(job.workdir)
        except (WorkspaceError, OSError) as error:  # the branch is pushed: the result stands
            logger.warning("workspace_not_removed session_id=%s task_id=%s error=%s",
                           job.session_id, job.task_id, error)  # fmt: skip
    return replace(outcome, summary=outcome.summary or f"commit {made or 'none'}")
