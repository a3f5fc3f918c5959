"""The shell driver on real processes: exit codes, output tails, deadline and cancellation."""

import threading
import time

from app.drivers.base import AgentSpec, DriverJob
from app.drivers.shell import ShellDriver


def job(command: str, tmp_path, timeout: float = 30.0) -> DriverJob:
    return DriverJob(session_id="s", task_id="t", task_key="k", attempt=1, title="t",
                     description="", agent=AgentSpec(id="a", name="a", driver="shell"),
                     workdir=str(tmp_path), timeout_seconds=timeout, command=command)  # fmt: skip


def test_success_keeps_the_last_line_as_summary(tmp_path):
    result = ShellDriver().run(job("echo one; echo two", tmp_path), threading.Event())
    assert result.succeeded and result.exit_code == 0 and result.summary == "two"


def test_a_non_zero_exit_fails_without_retry(tmp_path):
    result = ShellDriver().run(job("echo oops >&2; exit 3", tmp_path), threading.Event())
    assert not result.succeeded and not result.retryable
    assert result.exit_code == 3 and "oops" in result.stderr_tail


def test_the_deadline_stops_the_whole_process_group(tmp_path):
    marker = tmp_path / "late"
    started = time.monotonic()
    result = ShellDriver().run(job(f"(sleep 1; touch {marker}) & sleep 3", tmp_path, 0.3),
                               threading.Event())  # fmt: skip
    assert time.monotonic() - started < 1.0
    assert not result.succeeded and result.retryable
    assert result.error == "Command timed out after 0.3s."
    time.sleep(max(0.0, started + 1.5 - time.monotonic()))  # past the child's 1 s
    assert not marker.exists(), "a child of the timed-out command kept running"


def test_cancel_stops_the_command_and_is_not_retried(tmp_path):
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    started = time.monotonic()
    result = ShellDriver().run(job("sleep 5", tmp_path), cancel)
    assert time.monotonic() - started < 2.5
    assert not result.succeeded and not result.retryable
    assert result.error == "Command cancelled."
