"""The `integration` step: merge the branches of a task's predecessors, in dependency order.

In a session's local repository the merge happens there; for a session that names a
`repository` URL, on this host's mirror of it: the task branches are fetched, merged in a
scratch worktree and the integration branch is pushed (see `app.workspaces`).
"""

from __future__ import annotations

import threading

from flask import current_app

from app.workspaces import (
    REMOTE,
    MergeConflict,
    RemoteUnavailable,
    WorkspaceError,
    merge_branches,
    merge_remote_branches,
)

from .base import DriverJob, DriverResult


class IntegrationDriver:
    """Merges `job.context["branches"]` into `job.context["target_branch"]` of the repository."""

    name = "integration"

    def run(self, job: DriverJob, cancel: threading.Event) -> DriverResult:
        """Merge every branch or fail listing the conflicting files."""
        branches = list(job.context.get("branches", []))
        target = job.context["target_branch"]
        if not branches:
            return DriverResult(succeeded=True, summary="No branch to merge.")
        try:
            if job.repository:
                head = merge_remote_branches(
                    job.repository, current_app.config["WORKSPACE_ROOT"], branches, target,
                    base_branch=job.repository_branch,
                )  # fmt: skip
            else:
                head = merge_branches(job.workdir, branches, target)
        except MergeConflict as conflict:
            merged = [branch.removeprefix(f"{REMOTE}/") for branch in conflict.merged]
            return DriverResult(
                succeeded=False,
                error=f"Merge conflict: {conflict}. Already merged: "
                + (", ".join(merged) or "none"),
                files_changed=list(conflict.files),
            )
        except RemoteUnavailable as error:
            return DriverResult(
                succeeded=False, retryable=True, error=f"Integration failed: {error}"
            )
        except WorkspaceError as error:
            return DriverResult(succeeded=False, error=f"Integration failed: {error}")
        return DriverResult(
            succeeded=True,
            summary=f"Merged {len(branches)} branches into {target} at {head[:12]}",
        )
