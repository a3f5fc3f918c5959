"""Fixtures for end-to-end tests: a real celery beat next to the real worker."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def beat(worker_env, services_root):
    """A real celery beat running the watchdog and the reconciler every second, for one test
    module: later tests (the integration ones drive the engine by hand) must not have a
    reconciler relaunching their sessions behind their back."""
    log = open(services_root / "beat.log", "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tasks.worker", "beat", "-l", "info",
         "-s", str(services_root / "beat-schedule")],
        cwd=ROOT, env=worker_env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    yield process
    process.terminate()
    process.wait(20)
