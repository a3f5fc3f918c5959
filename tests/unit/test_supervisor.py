"""The standalone stack's supervisor, on real short-lived subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from app.standalone.supervisor import BACKOFF, GAVE_UP, RUNNING, STOPPED, Supervisor
from tests.conftest import wait_until


def spawner(*command: str, counter: list | None = None):
    def start() -> subprocess.Popen:
        if counter is not None:
            counter.append(1)
        return subprocess.Popen(list(command), start_new_session=True)

    return start


def crash(code: int = 3):
    return [sys.executable, "-c", f"import sys; sys.exit({code})"]


@pytest.fixture
def lines():
    return []


@pytest.fixture
def make(lines):
    made = []

    def build(**options) -> Supervisor:
        options.setdefault("initial_delay", 0.05)
        options.setdefault("max_delay", 0.2)
        options.setdefault("poll_interval", 0.02)
        supervisor = Supervisor(report=lines.append, **options)
        made.append(supervisor)
        return supervisor

    yield build
    for supervisor in made:
        supervisor.stop()


def test_restarts_with_doubling_capped_backoff_and_names_the_exit(make, lines):
    supervisor = make(max_restarts=10, window=600)
    starts: list = []
    supervisor.add("flaky", spawner(*crash(3), counter=starts))
    supervisor.watch()
    wait_until(lambda: len(starts) >= 5, 30, message="five starts")
    assert supervisor.children["flaky"].delays[:4] == [0.05, 0.1, 0.2, 0.2]
    assert set(supervisor.children["flaky"].exits) == {3}
    assert "flaky exited with code 3; restarting it in 0.05s" in lines[0]
    assert "restarting it in 0.1s" in lines[1]


def test_a_signal_is_named_and_the_new_process_has_a_new_pid(make, lines):
    supervisor = make()
    first = supervisor.add("sleeper", spawner("sleep", "60"))
    supervisor.watch()
    os.kill(first.pid, signal.SIGKILL)
    wait_until(lambda: supervisor.pid("sleeper") not in (None, first.pid), 30, message="restart")
    assert supervisor.state("sleeper") == RUNNING
    assert "sleeper exited with code -9 (SIGKILL)" in lines[0]


def test_gives_up_after_max_restarts_within_the_window_others_keep_running(make, lines):
    supervisor = make(max_restarts=3, window=600)
    starts: list = []
    supervisor.add("loop", spawner(*crash(7), counter=starts))
    healthy = supervisor.add("healthy", spawner("sleep", "60"))
    supervisor.watch()
    wait_until(lambda: supervisor.state("loop") == GAVE_UP, 30, message="give up")
    assert len(starts) == 4  # the first start and three restarts
    assert "crash loop, giving up on loop" in lines[-1]
    assert "restarted 3 times within 600s" in lines[-1]
    supervisor.poll()
    assert len(starts) == 4
    assert supervisor.state("healthy") == RUNNING and healthy.poll() is None
    assert supervisor.pid("healthy") == healthy.pid


def test_restarts_outside_the_window_do_not_count(make, lines):
    # A zero-length window forgets each restart before the next exit: never a crash loop.
    supervisor = make(max_restarts=1, window=0)
    starts: list = []
    supervisor.add("rare", spawner(*crash(1), counter=starts))
    supervisor.watch()
    wait_until(lambda: len(starts) >= 4, 30, message="restarts")
    assert supervisor.state("rare") != GAVE_UP
    assert not any("giving up" in line for line in lines)
    assert set(supervisor.children["rare"].delays) == {0.05}


def test_a_healthy_child_is_left_alone(make, lines):
    supervisor = make()
    process = supervisor.add("steady", spawner("sleep", "60"))
    for _ in range(20):
        supervisor.poll()
    assert supervisor.pid("steady") == process.pid and process.poll() is None
    assert lines == [] and supervisor.children["steady"].exits == []


def test_stop_ends_running_children_and_those_waiting_to_restart(make, lines):
    supervisor = make(initial_delay=30, max_delay=30)
    starts: list = []
    running = supervisor.add("running", spawner("sleep", "60"))
    supervisor.add("waiting", spawner(*crash(2), counter=starts))
    supervisor.watch()
    wait_until(lambda: supervisor.state("waiting") == BACKOFF, 30, message="backoff")
    supervisor.stop()
    assert running.poll() == -signal.SIGTERM
    assert supervisor.state("running") == STOPPED and supervisor.state("waiting") == STOPPED
    supervisor.poll()
    assert len(starts) == 1
    with pytest.raises(RuntimeError):
        supervisor.add("late", spawner("sleep", "60"))


def test_stop_kills_a_child_that_ignores_sigterm(make):
    supervisor = make(stop_timeout=0.5)
    stubborn = [sys.executable, "-c",
                "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(60)"]  # fmt: skip
    process = supervisor.add(
        "stubborn",
        lambda: subprocess.Popen(stubborn, stdout=subprocess.PIPE, start_new_session=True),
    )
    assert process.stdout.readline() == b"ready\n"
    supervisor.stop()
    assert process.poll() == -signal.SIGKILL
