"""The `shell` driver: runs a task's command in its working directory, for deterministic steps."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

from flask import current_app, has_app_context

import app.sandbox as sandbox

from .base import DriverJob, DriverResult

logger = logging.getLogger(__name__)

TAIL_BYTES = 4000


def _tail(path: str) -> str:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - TAIL_BYTES))
        return handle.read().decode("utf-8", errors="replace")


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, a child that gets SIGKILL when the worker thread that started it dies, so a
    crashed worker leaves no command running behind it (the task runs again elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1

    def set_parent_death_signal() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)

    return set_parent_death_signal


# Without setpriv (sandbox.launcher), a preexec_fn sets the parent-death signal; it forces a
# full fork of the worker (≈ 5 ms per task) instead of vfork.
PARENT_DEATH_SIGNAL = None if sandbox.SETPRIV else _die_with_parent()

# How often a running command's watcher looks for a cancellation.
CANCEL_POLL_SECONDS = 0.1


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(3)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def _watch(
    process: subprocess.Popen,
    cancel: threading.Event,
    done: threading.Event,
    deadline: float,
    timed_out: threading.Event,
) -> None:
    """Stop the process group when the attempt is cancelled or its deadline passes."""
    while not done.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out.set()
            _kill_group(process)
            return
        if cancel.wait(min(CANCEL_POLL_SECONDS, remaining)):
            _kill_group(process)
            return


def workdir_problem(workdir: str, user: sandbox.CommandUser | None = None) -> str | None:
    """Why a command (run as `user`, else as the worker) cannot run in `workdir` (made if
    missing), or None when it can."""
    try:
        sandbox.prepare_workdir(workdir, user, _workspace_root())
    except OSError as error:
        return f"The workdir {workdir} cannot be created: {error.strerror or error}."
    if not os.path.isdir(workdir):
        return f"The workdir {workdir} is not a directory."
    if user is None and not os.access(workdir, os.W_OK | os.X_OK):
        return f"The workdir {workdir} is not writable by the worker."
    if user is not None and not sandbox.writable_by(workdir, user):
        return f"The workdir {workdir} is not writable by {user.name} (COMMAND_USER)."
    return None


def _workspace_root() -> str | None:
    """WORKSPACE_ROOT of the app this worker runs (of the environment outside one)."""
    if has_app_context():
        return current_app.config.get("WORKSPACE_ROOT")
    return os.environ.get("WORKSPACE_ROOT")


class ShellDriver:
    """Run `job.command` with bash; exit code 0 is success, the output tails are kept.

    The command gets a minimal environment and, under a root worker, runs as COMMAND_USER
    (`app/sandbox.py`).
    """

    name = "shell"

    def run(self, job: DriverJob, cancel: threading.Event) -> DriverResult:
        """Run the command until it exits, times out or is cancelled."""
        if not job.command:
            return DriverResult(succeeded=False, error="The task has no command to run.")
        workdir = job.workdir or os.getcwd()
        try:
            user = sandbox.command_user()
        except sandbox.CommandUserError as error:
            return DriverResult(succeeded=False, error=str(error))
        problem = workdir_problem(workdir, user)
        if problem:  # not worth retrying: the same directory fails the same way
            return DriverResult(succeeded=False, error=problem)
        task_env = {
            "ORCH_SESSION_ID": job.session_id,
            "ORCH_TASK_ID": job.task_id,
            "ORCH_TASK_KEY": job.task_key,
            "ORCH_ATTEMPT": str(job.attempt),
        }
        agent_env = sandbox.agent_env(job.agent.config, job.agent.id)
        env = sandbox.command_environment(agent_env, task_env, user)
        with tempfile.NamedTemporaryFile() as out, tempfile.NamedTemporaryFile() as err:
            process = subprocess.Popen(
                [*sandbox.launcher(user), sandbox.BASH, "-c", job.command],
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                preexec_fn=PARENT_DEATH_SIGNAL,
                **sandbox.popen_user(user),
            )
            stopped = self._wait(process, job.timeout_seconds, cancel)
            stdout, stderr = _tail(out.name), _tail(err.name)
        code = process.returncode
        if stopped:
            error = f"Command {stopped}."
        elif code != 0:
            error = f"Command exited with code {code}."
        else:
            error = None
        return DriverResult(
            succeeded=error is None,
            summary=stdout.strip().splitlines()[-1] if stdout.strip() else "",
            exit_code=code,
            stdout_tail=stdout,
            stderr_tail=stderr,
            error=error,
            retryable=stopped is not None and stopped != "cancelled",
        )

    @staticmethod
    def _wait(process: subprocess.Popen, timeout: float, cancel: threading.Event) -> str | None:
        """Wait for the process; return why it was stopped, or None if it exited by itself.

        The wait blocks in waitpid (`Popen.wait(timeout)` would poll with sleeps of up to
        50 ms); one watcher thread enforces both the deadline and the cancellation.
        """
        done = threading.Event()
        timed_out = threading.Event()
        watcher = threading.Thread(
            target=_watch,
            args=(process, cancel, done, time.monotonic() + timeout, timed_out),
            daemon=True,
        )
        watcher.start()
        try:
            process.wait()
        finally:
            done.set()
        if timed_out.is_set():
            return f"timed out after {timeout:g}s"
        return "cancelled" if cancel.is_set() else None
