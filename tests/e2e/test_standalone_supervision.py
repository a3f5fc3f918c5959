"""`make run`'s Stack with its real web, worker, beat and Flower on the test services: a worker
killed with SIGKILL comes back while the API keeps answering; under root only the worker stays
root (its commands drop to COMMAND_USER); Flower's password is on no command line."""

from __future__ import annotations

import os
import pwd
import signal
from pathlib import Path

import pytest
import redis as redis_lib
import requests

from app.standalone.servers import free_port
from app.standalone.stack import SERVICE_USER, Stack, reset_metrics_dir
from app.standalone.supervisor import RUNNING
from tests.conftest import wait_until

pytestmark = pytest.mark.e2e

FLOWER_PASSWORD = "flower-secret-not-in-argv"


@pytest.fixture(scope="module")
def stack(app, database_url, redis_url, services_root):
    home = services_root / "supervised-stack"
    home.mkdir()
    broker = redis_url.rsplit("/", 1)[0] + "/13"  # apart from the shared test worker's queues
    redis_lib.Redis.from_url(broker).flushdb()
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": broker,
           "WORKSPACE_ROOT": str(home / "work"), "PROMETHEUS_MULTIPROC_DIR": str(home / "metrics"),
           "FLOWER_BASIC_AUTH": f"admin:{FLOWER_PASSWORD}"}  # fmt: skip
    env.pop("ORCH_TOKEN", None)
    reset_metrics_dir(home / "metrics")
    stack = Stack(home=home, api_port=free_port(), flower_port=free_port(),
                  worker_concurrency=2, env=env)  # fmt: skip
    try:
        stack.start_processes()
        yield stack
    finally:
        stack.stop()


def live(url: str) -> bool:
    try:
        return requests.get(f"{url}/health/live", timeout=5).ok
    except requests.RequestException:
        return False


def ready_count(log: Path) -> int:
    return log.read_bytes().count(b" ready.")


def owner(pid: int) -> int:
    return os.stat(f"/proc/{pid}").st_uid


def test_a_killed_worker_is_restarted_and_the_api_keeps_serving(stack):
    log = stack.home / "worker.log"
    wait_until(lambda: ready_count(log) >= 1, 60, message="worker ready")
    web, worker = stack.supervisor.pid("web"), stack.supervisor.pid("worker")

    os.kill(worker, signal.SIGKILL)
    wait_until(lambda: stack.supervisor.children["worker"].exits, 30, message="exit seen")
    assert live(stack.api_url)  # while the worker is down
    assert stack.supervisor.children["worker"].exits == [-signal.SIGKILL]

    wait_until(lambda: stack.supervisor.pid("worker") not in (None, worker), 60, message="restart")
    wait_until(lambda: ready_count(log) >= 2, 60, message="restarted worker ready")
    assert live(stack.api_url)
    assert requests.get(f"{stack.api_url}/health/ready", timeout=5).ok
    assert stack.supervisor.pid("web") == web
    assert all(stack.supervisor.state(name) == RUNNING for name in stack.children)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping root needs root")
def test_under_root_web_beat_and_flower_drop_to_the_service_user(stack):
    service = pwd.getpwnam(SERVICE_USER).pw_uid
    for name in ("web", "beat", "flower"):
        assert owner(stack.supervisor.pid(name)) == service, name
    # The worker stays root so that its commands run as COMMAND_USER, not as itself.
    assert owner(stack.supervisor.pid("worker")) == 0
    assert service != pwd.getpwnam("orchestrator").pw_uid  # PostgreSQL's data owner


def test_flower_password_is_on_no_command_line_and_still_asked_for(stack):
    for name in stack.children:
        argv = Path(f"/proc/{stack.supervisor.pid(name)}/cmdline").read_bytes()
        assert FLOWER_PASSWORD.encode() not in argv, name

    def status(**auth):
        try:
            return requests.get(stack.flower_url, timeout=5, **auth).status_code
        except requests.ConnectionError:
            return None

    assert wait_until(status, 60, interval=0.2, message="flower") == 401
    assert status(auth=("admin", FLOWER_PASSWORD)) == 200
