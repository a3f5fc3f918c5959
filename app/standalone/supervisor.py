"""Keeps the standalone stack's processes running: a child that exits is started again after an
exponential backoff, and one that keeps crashing is given up on while the others go on."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

RUNNING, BACKOFF, GAVE_UP, STOPPED = "running", "restarting", "gave up", "stopped"


def describe_exit(code: int) -> str:
    """`3`, or `-9 (SIGKILL)` for a child a signal ended."""
    if code < 0:
        try:
            return f"{code} ({signal.Signals(-code).name})"
        except ValueError:
            return str(code)
    return str(code)


@dataclass
class Child:
    """One supervised process: how to start it and what happened to it so far."""

    name: str
    start: Callable[[], subprocess.Popen]
    process: subprocess.Popen | None = None
    state: str = STOPPED
    restart_at: float = 0.0
    restarts: deque = field(default_factory=deque)  # when each restart was scheduled
    exits: list[int] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)


class Supervisor:
    """Start named processes, restart those that exit (backoff `initial_delay` doubling up to
    `max_delay`), give up on one restarted more than `max_restarts` times within `window`
    seconds. `report` receives one line per restart or give-up (no secrets: names, codes)."""

    def __init__(
        self,
        *,
        initial_delay: float = 1.0,
        max_delay: float = 30.0,
        max_restarts: int = 5,
        window: float = 300.0,
        poll_interval: float = 0.2,
        stop_timeout: float = 15.0,
        report: Callable[[str], None] | None = None,
    ) -> None:
        self.initial_delay, self.max_delay = initial_delay, max_delay
        self.max_restarts, self.window = max_restarts, window
        self.poll_interval, self.stop_timeout = poll_interval, stop_timeout
        self.report = report or (lambda line: logger.warning("%s", line))
        self.children: dict[str, Child] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, name: str, start: Callable[[], subprocess.Popen]) -> subprocess.Popen:
        """Start `start()` as `name` now and supervise it from then on."""
        with self._lock:
            if self._stopping.is_set():
                raise RuntimeError("the supervisor is stopping")
            child = self.children[name] = Child(name, start)
            child.process, child.state = start(), RUNNING
            return child.process

    def watch(self) -> None:
        """Supervise in a background thread until `stop()`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="supervisor", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stopping.wait(self.poll_interval):
            self.poll()

    def poll(self) -> None:
        """Notice children that exited and restart those whose backoff has passed."""
        with self._lock:
            if self._stopping.is_set():
                return
            now = time.monotonic()
            for child in self.children.values():
                if child.state == RUNNING and child.process.poll() is not None:
                    self._exited(child, child.process.returncode, now)
                elif child.state == BACKOFF and now >= child.restart_at:
                    self._restart(child)

    def _exited(self, child: Child, code: int, now: float) -> None:
        child.exits.append(code)
        while child.restarts and now - child.restarts[0] > self.window:
            child.restarts.popleft()
        if len(child.restarts) >= self.max_restarts:
            child.state = GAVE_UP
            self.report(
                f"supervisor: {child.name} exited with code {describe_exit(code)}; it was "
                f"restarted {len(child.restarts)} times within {self.window:g}s: crash loop, "
                f"giving up on {child.name} (the other processes keep running)"
            )
            return
        delay = min(self.max_delay, self.initial_delay * 2 ** len(child.restarts))
        child.restarts.append(now)
        child.delays.append(delay)
        child.state, child.restart_at = BACKOFF, now + delay
        self.report(
            f"supervisor: {child.name} exited with code {describe_exit(code)}; "
            f"restarting it in {delay:g}s (restart {len(child.restarts)} of at most "
            f"{self.max_restarts} within {self.window:g}s)"
        )

    def _restart(self, child: Child) -> None:
        try:
            child.process, child.state = child.start(), RUNNING
        except OSError as error:
            child.state = GAVE_UP
            self.report(f"supervisor: {child.name} cannot be started ({error}); giving up on it")
            return
        logger.info("supervisor restarted name=%s pid=%s", child.name, child.process.pid)

    def state(self, name: str) -> str:
        """running, restarting (waiting out its backoff), gave up, or stopped."""
        return self.children[name].state

    def pid(self, name: str) -> int | None:
        """The pid of `name`'s current process (None while it waits to be restarted)."""
        child = self.children[name]
        return child.process.pid if child.state == RUNNING else None

    def stop(self) -> None:
        """Stop supervising, then end every child's process group (SIGTERM, later SIGKILL)."""
        with self._lock:
            self._stopping.set()
            # Only live ones: a reaped child's pid may already belong to another process.
            processes = [
                child.process
                for child in self.children.values()
                if child.process is not None and child.process.poll() is None
            ]
            for child in self.children.values():
                child.state = STOPPED
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        for process in processes:
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for process in processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    """Signal the process group `process` leads (children start in their own session)."""
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
