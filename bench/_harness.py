"""Shared set-up for benchmarks: services (system or embedded), a migrated database, workers."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.standalone.servers import EmbeddedPostgres, EmbeddedRedis, free_port, wait_for_port  # noqa: E402


@contextlib.contextmanager
def services():
    """Yield (database_url, redis_url): from the environment, else embedded servers."""
    home = Path(tempfile.mkdtemp(prefix="orch-bench-"))
    home.chmod(0o755)
    started = []
    database_url = os.environ.get("DATABASE_URL")
    redis_url = os.environ.get("REDIS_URL")
    try:
        if not database_url:
            postgres = EmbeddedPostgres(home / "pg", durable=False)
            database_url = postgres.start()
            started.append(postgres)
        if not redis_url:
            valkey = EmbeddedRedis(home / "redis")
            redis_url = valkey.start()
            started.append(valkey)
        database_url = fresh_database(database_url)
        os.environ["ORCH_TOKEN"] = admin_token(database_url)
        yield database_url, redis_url, home
    finally:
        for server in reversed(started):
            server.stop()


def fresh_database(server_url: str) -> str:
    """Create a migrated database for this run on the server of `server_url`."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from app.config import _normalize_database_url

    url = make_url(_normalize_database_url(server_url))
    name = f"orch_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    database_url = url.set(database=name).render_as_string(hide_password=False)
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        check=True,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
    )
    return database_url


def admin_token(database_url: str) -> str:
    """Create an admin API token in the benchmark's database and return its secret."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from app.services.tokens import create_token

    engine = create_engine(database_url)
    with Session(engine) as session, session.begin():
        _, secret = create_token(session, "bench", ["admin"])
    engine.dispose()
    return secret


def auth_headers() -> dict:
    """The Authorization header for API calls (the token `services()` created)."""
    token = os.environ.get("ORCH_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


class Processes:
    """Child processes (workers, API) that are stopped together."""

    def __init__(self, env: dict, home: Path):
        self.env, self.home, self.children = env, home, []

    def start(self, name: str, command: list[str], ready_marker: bytes | None = None, cwd=ROOT):
        log_path = self.home / f"{name}.log"
        process = subprocess.Popen(command, cwd=cwd, env=self.env, stdout=open(log_path, "ab"),
                                   stderr=subprocess.STDOUT)  # fmt: skip
        self.children.append(process)
        deadline = time.monotonic() + 60
        while ready_marker and ready_marker not in log_path.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        return process

    def worker(self, app: str, concurrency: int, queues: str = "control,agents", cwd=ROOT):
        return self.start(
            f"worker-{app}",
            [sys.executable, "-m", "celery", "-A", app, "worker", "-Q", queues, "-P", "threads",
             "-c", str(concurrency), "-l", "info", "--without-gossip", "--without-mingle",
             "-n", f"{app}-{uuid.uuid4().hex[:4]}@%h"],
            ready_marker=b" ready.", cwd=cwd,
        )  # fmt: skip

    def api(self, worker_class: str = "gevent") -> str:
        """Start the API as the Procfile does (2 gevent workers); `gthread` starts it as it was
        run before (2 workers x 4 threads), for comparisons."""
        port = free_port()
        gunicorn = [str(Path(sys.executable).parent / "gunicorn"), "--workers", "2"]
        if worker_class == "gthread":
            gunicorn += ["--worker-class", "gthread", "--threads", "4"]
        else:
            gunicorn += ["--worker-class", worker_class]
        self.start(f"web-{worker_class}", [*gunicorn, "--bind", f"127.0.0.1:{port}", "wsgi:app"])
        wait_for_port(port)
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        for process in self.children:
            process.terminate()
        for process in self.children:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_session(api: str, session_id: str, timeout: float = 600, interval: float = 0.02) -> dict:
    """Poll the API every `interval` seconds until the session finishes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = requests.get(
            f"{api}/api/v1/sessions/{session_id}", headers=auth_headers(), timeout=10
        ).json()
        if body["status"] in ("completed", "failed", "partially_completed"):
            return body
        time.sleep(interval)
    raise TimeoutError(f"session {session_id} did not finish in {timeout}s")


def register_shell_agent(api: str, capacity: int) -> None:
    """Register one shell agent with every capability the benchmarks use."""
    body = {"name": f"bench-{uuid.uuid4().hex[:6]}", "type": "implementer", "driver": "shell",
            "capabilities": ["code_generation"], "capacity": capacity}  # fmt: skip
    response = requests.post(f"{api}/api/v1/agents", json=body, headers=auth_headers(), timeout=10)
    response.raise_for_status()
