"""The deployment files agree with the code: Procfile processes, the compose file's services,
health checks and start order (checked by `docker compose config` where a client exists)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "compose.yaml"
ENV = {**os.environ, "SECRET_KEY": "x", "FLOWER_BASIC_AUTH": "admin:secret"}


def compose_client() -> list[str] | None:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_procfile_runs_every_process_with_shared_metrics():
    lines = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines())
    assert set(lines) == {"release", "web", "worker", "beat", "flower"}
    assert lines["release"] == "alembic upgrade head"
    assert "gunicorn" in lines["web"] and "wsgi:app" in lines["web"]
    for name in ("web", "worker", "beat"):
        assert "PROMETHEUS_MULTIPROC_DIR" in lines[name], name
    # Flower reads FLOWER_BASIC_AUTH from its environment: never the password in argv.
    assert "basic-auth" not in lines["flower"]
    assert '"${FLOWER_BASIC_AUTH:?' in lines["flower"]  # refuses to start without it


def test_compose_file_has_every_service_with_health_checks_and_start_order():
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    assert set(services) == {"postgres", "redis", "web", "worker", "beat", "flower"}
    for name in ("postgres", "redis", "web", "worker", "flower"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("web", "worker", "beat", "flower"):
        needs = services[name]["depends_on"]
        assert needs["postgres"]["condition"] == needs["redis"]["condition"] == "service_healthy"
        assert services[name]["command"] == [name]
    assert services["worker"]["depends_on"]["web"]["condition"] == "service_healthy"
    assert services["beat"]["depends_on"]["web"]["condition"] == "service_healthy"
    env = services["web"]["environment"]
    assert (
        env["PROMETHEUS_MULTIPROC_DIR"]
        and "metrics:" + env["PROMETHEUS_MULTIPROC_DIR"] in (services["worker"]["volumes"])
    )
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    assert "basic-auth" not in entrypoint and '"${FLOWER_BASIC_AUTH:?' in entrypoint
    with_password = {
        name for name, service in services.items()
        if "FLOWER_BASIC_AUTH" in service.get("environment", {})
    }  # fmt: skip
    assert with_password == {"flower"}  # web, worker and beat never hold Flower's password


def test_docker_compose_config_accepts_the_file():
    client = compose_client()
    if client is None:
        pytest.skip("no docker compose client here; the YAML checks above still ran")
    result = subprocess.run([*client, "-f", str(COMPOSE), "config"], env=ENV, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "healthcheck" in result.stdout


def test_web_runs_gevent_workers_in_the_procfile_and_the_image():
    # An open event stream holds no request thread (tests/e2e/test_event_streams.py).
    lines = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines())
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    for command in (lines["web"], entrypoint):
        assert "--worker-class gevent" in command and "--threads" not in command
