"""Shared fixtures: real PostgreSQL and Redis (system ones if the environment names them,
embedded ones otherwise), a migrated throwaway database, the Flask app and a real worker."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import redis as redis_lib
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.config import _normalize_database_url
from app.standalone.servers import EmbeddedPostgres, EmbeddedRedis

ROOT = Path(__file__).resolve().parent.parent
TABLES = [
    "session_events", "checkpoints", "task_dependencies", "session_tasks", "sessions", "agents",
    "context_versions", "contexts", "api_tokens", "beat_job_runs",
]  # fmt: skip


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05, message: str = ""):
    """Poll `predicate` until it returns a truthy value; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message or predicate}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def services_root():
    root = Path(tempfile.mkdtemp(prefix="orch-test-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def tmp_path(tmp_path, services_root):
    """pytest's tmp_path, or, when tests run as root, a fresh directory that shell commands
    can write in: they run as COMMAND_USER, who cannot enter pytest's private (0700) ones."""
    from app.sandbox import command_user

    user = command_user()
    if user is None:
        return tmp_path
    path = Path(tempfile.mkdtemp(prefix=f"{tmp_path.name[:40]}-", dir=services_root))
    os.chown(path, user.uid, user.gid)
    return path


@pytest.fixture(scope="session")
def embedded_postgres(services_root):
    if os.environ.get("DATABASE_URL"):
        yield None
        return
    server = EmbeddedPostgres(services_root / "pg", durable=False)
    server.start()
    yield server
    server.stop("immediate")


@pytest.fixture(scope="session")
def embedded_redis(services_root):
    if os.environ.get("REDIS_URL"):
        yield None
        return
    server = EmbeddedRedis(services_root / "redis")
    server.start()
    yield server
    server.stop()


def _create_database(server_url: str, prefix: str) -> str:
    """Create an empty database on the server of `server_url` and return its URL."""
    url = make_url(_normalize_database_url(server_url))
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def _drop_database(database_url: str) -> None:
    url = make_url(database_url)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def postgres_server_url(embedded_postgres):
    return os.environ.get("DATABASE_URL") or embedded_postgres.url


@pytest.fixture(scope="session")
def make_database(postgres_server_url):
    """A factory of fresh, empty databases, dropped at the end of the test run."""
    created = []

    def make(prefix: str = "orch_test") -> str:
        url = _create_database(postgres_server_url, prefix)
        created.append(url)
        return url

    yield make
    for url in created:
        _drop_database(url)


def run_alembic(database_url: str, *args: str) -> subprocess.CompletedProcess:
    """Run the alembic CLI of this project against `database_url`."""
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="session")
def database_url(make_database):
    url = make_database()
    result = run_alembic(url, "upgrade", "head")
    assert result.returncode == 0, result.stderr
    return url


@pytest.fixture(scope="session")
def redis_url(embedded_redis):
    if embedded_redis is not None:
        return embedded_redis.url
    url = make_url(os.environ["REDIS_URL"].replace("redis://", "postgresql://", 1))
    db_number = os.environ.get("TEST_REDIS_DB", "11")
    return f"redis://{url.host or '127.0.0.1'}:{url.port or 6379}/{db_number}"


@pytest.fixture(scope="session")
def app(database_url, redis_url, services_root):
    from app import create_app

    client = redis_lib.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    return create_app(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "WORKSPACE_ROOT": str(services_root / "work"),
        }
    )


ADMIN_TOKEN_ID = "00000000-0000-4000-8000-00000000ad01"


@pytest.fixture(scope="session")
def admin_token() -> str:
    """The secret of an admin-scope API token that `client` sends (recreated after truncation)."""
    from app.services.tokens import new_secret

    return new_secret()


def ensure_token(app, token_id: str, secret: str, scopes: list[str]) -> None:
    """Insert an API token row with a known secret unless it is already there."""
    from sqlalchemy.orm import Session as DbSession

    from app.extensions import db as database
    from app.services import tokens
    from models import ApiToken

    with DbSession(bind=database.engine) as session, session.begin():
        if session.get(ApiToken, token_id) is None:
            session.add(ApiToken(id=token_id, name=f"test-{scopes[-1]}", scopes=scopes,
                                 prefix=secret[: tokens.PREFIX_LENGTH],
                                 token_hash=tokens.hash_token(secret)))  # fmt: skip


@pytest.fixture
def client(app, admin_token):
    """A test client that sends an admin token, so every endpoint is reachable."""
    ensure_token(app, ADMIN_TOKEN_ID, admin_token, ["admin"])
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {admin_token}"
    return client


@pytest.fixture
def anonymous_client(app):
    """A test client that sends no token."""
    return app.test_client()


@pytest.fixture
def db(app):
    """A database session of the test's own (not the views'), with every table emptied after."""
    from sqlalchemy.orm import Session as DbSession

    from app.extensions import db as database

    session = DbSession(bind=database.engine, expire_on_commit=False)
    with app.app_context():
        yield session
    session.close()
    database.session.remove()
    truncate_all(database.engine)


def truncate_all(engine, attempts: int = 5) -> None:
    """Empty every table; a live worker may hold locks, so a deadlock is retried."""
    from sqlalchemy.exc import OperationalError

    for attempt in range(attempts):
        try:
            with engine.begin() as connection:
                connection.execute(text("SET LOCAL lock_timeout = '5s'"))
                connection.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
            return
        except OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


@pytest.fixture
def redis_client(redis_url):
    """A Redis client on the test database number, emptied before the test."""
    client = redis_lib.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


class WorkerProcess:
    """A real `celery worker` subprocess on the test services."""

    def __init__(self, env: dict, log_path: Path, concurrency: int = 8, pool: str = "threads"):
        self.env = env
        self.log_path = log_path
        self.concurrency = concurrency
        self.pool = pool
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [
            sys.executable, "-m", "celery", "-A", "tasks.worker", "worker",
            "-Q", "control,agents", "-P", self.pool, "-c", str(self.concurrency),
            "-l", "info", "--without-gossip", "--without-mingle",
            "-n", f"test-{uuid.uuid4().hex[:6]}@%h",
        ]  # fmt: skip
        log = open(self.log_path, "ab")
        offset = self.log_path.stat().st_size
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        wait_until(lambda: b" ready." in self.log_path.read_bytes()[offset:], 60,
                   message="worker ready")  # fmt: skip

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL the worker, as a crash or an OOM kill would."""
        self.process.kill()
        self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="session")
def worker_env(database_url, redis_url, services_root):
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "WORKSPACE_ROOT": str(services_root / "work"),
        # Secrets a worker holds, which its shell commands must never see.
        "SECRET_KEY": "worker-secret-key-never-in-commands",
        "FLOWER_BASIC_AUTH": "admin:flower-password-never-in-commands",
        # Short leases so that tests of lost workers finish in seconds.
        "TASK_LEASE_SECONDS": "4",
        "TASK_HEARTBEAT_SECONDS": "1",
        "DISPATCH_GRACE_SECONDS": "3",
        "RECONCILE_INTERVAL_SECONDS": "1",
        "WATCHDOG_INTERVAL_SECONDS": "1",
    }


@pytest.fixture(scope="session")
def worker(app, worker_env, services_root):
    """One real Celery worker for the whole run (thread pool, both queues)."""
    process = WorkerProcess(worker_env, services_root / "worker.log")
    process.start()
    yield process
    process.stop()
