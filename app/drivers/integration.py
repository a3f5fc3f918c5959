"""The `integration` step: merge the branches of a task's predecessors, in dependency order."""

from __future__ import annotations

import threading

from app.workspaces import MergeConflict, WorkspaceError, merge_branches

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
            head = merge_branches(job.workdir, branches, target)
        except MergeConflict as conflict:
            return DriverResult(
                succeeded=False,
                error=f"Merge conflict: {conflict}. Already merged: "
                + (", ".join(conflict.merged) or "none"),
                files_changed=list(conflict.files),
            )
        except WorkspaceError as error:
            return DriverResult(succeeded=False, error=f"Integration failed: {error}")
        return DriverResult(
            succeeded=True,
            summary=f"Merged {len(branches)} branches into {target} at {head[:12]}",
        )
