"""The standalone stack (like `airflow standalone`): embedded services when no URLs are given,
migrations, then API, worker, beat and Flower as supervised child processes that end with this
one. Under root, web, beat and Flower run as SERVICE_USER; the worker stays root so that its
commands run as COMMAND_USER, a user that can reach neither the worker nor the services."""

from __future__ import annotations

import logging
import os
import pwd
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from app.cli import progress
from app.cli.client import EXIT_FAILED, EXIT_OK, ApiClient, CliError, in_database
from app.config import install_secret
from app.services import tokens
from models import ApiToken

from .servers import (
    EmbeddedPostgres,
    EmbeddedRedis,
    _ensure_traversable,
    _running_as_root,
    free_port,
    wait_for_port,
)
from .supervisor import GAVE_UP, Supervisor

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
# Not `orchestrator` (PostgreSQL's, owner of the data directory) nor COMMAND_USER.
SERVICE_USER = "orch-service"
# Run as SERVICE_USER when started as root; the worker runs as root (see the module docstring).
DROPPED = ("web", "beat", "flower")
# Sizing rule: the sum of the agents' capacities plus 8 (launches, recovery, wake-ups).
DEFAULT_CONCURRENCY = 96


def reset_metrics_dir(path: Path) -> None:
    """An empty Prometheus multiprocess directory: files of earlier runs would count again."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()


def ensure_service_user(name: str = SERVICE_USER) -> pwd.struct_passwd:
    """The unprivileged system user web, beat and Flower run as, created on first use."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "-s", "/usr/sbin/nologin",
             name], check=True, capture_output=True,
        )  # fmt: skip
        return pwd.getpwnam(name)


def port_or_free(preferred: int) -> int:
    """`preferred` if nothing listens there yet, else any free port."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


@dataclass
class Stack:
    """Everything `make run` starts, and how to stop it."""

    home: Path
    api_port: int = 5000
    flower_port: int = 5555
    # Worker threads: enough for every slot of every agent plus the control tasks; waiting
    # tasks hold none (app/engine/waitlist.py). WORKER_CONCURRENCY overrides it.
    worker_concurrency: int = field(
        default_factory=lambda: int(os.environ.get("WORKER_CONCURRENCY", DEFAULT_CONCURRENCY))
    )
    env: dict = field(default_factory=lambda: dict(os.environ))
    # Restarts and give-ups are logged as warnings: on the console's stderr.
    supervisor: Supervisor = field(default_factory=Supervisor)
    embedded: list = field(default_factory=list)
    service_user: pwd.struct_passwd | None = None

    @property
    def children(self) -> dict[str, subprocess.Popen]:
        """Each supervised process's current Popen."""
        return {name: child.process for name, child in self.supervisor.children.items()}

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def flower_url(self) -> str:
        return f"http://127.0.0.1:{self.flower_port}"

    def start_services(self) -> None:
        """Use DATABASE_URL / REDIS_URL when set, else start embedded servers under `home`."""
        self.home.mkdir(parents=True, exist_ok=True)
        if not self.env.get("DATABASE_URL"):
            postgres = EmbeddedPostgres(self.home / "postgres")
            self.env["DATABASE_URL"] = postgres.start()
            self.embedded.append(postgres)
            print(f"  PostgreSQL  embedded, data in {postgres.data}")
        else:
            print("  PostgreSQL  from DATABASE_URL")
        if not self.env.get("REDIS_URL"):
            redis_server = EmbeddedRedis(self.home / "redis", persistent=True)
            self.env["REDIS_URL"] = redis_server.start()
            self.embedded.append(redis_server)
            print(f"  Redis       embedded (Valkey) on port {redis_server.port}")
        else:
            print("  Redis       from REDIS_URL")
        self.env.setdefault("WORKSPACE_ROOT", str(self.home / "work"))
        self.env.setdefault("FLOWER_BASIC_AUTH", f"admin:{secrets.token_urlsafe(12)}")
        # The dashboard's cookie key, kept per install; handed to the processes in their
        # environment, since they run as the service user and cannot read the stack's files.
        if not self.env.get("SECRET_KEY"):
            self.env["SECRET_KEY"] = install_secret(self.home / "secret-key")
        self.env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(self.home / "metrics"))
        reset_metrics_dir(Path(self.env["PROMETHEUS_MULTIPROC_DIR"]))

    def migrate(self) -> None:
        """Bring the database schema to the newest migration."""
        subprocess.run(
            [sys.executable, "-m", "alembic", "upgrade", "head"],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
        )

    def drop_root(self) -> None:
        """Under root: pick SERVICE_USER for web, beat and Flower, and hand it what they write
        (their HOME and beat's schedule in `home/service`, the metrics directory)."""
        if not _running_as_root():
            return
        user = ensure_service_user()
        _ensure_traversable(Path(os.path.realpath(sys.executable)).parent)
        _ensure_traversable(ROOT)
        _ensure_traversable(self.home)
        service_home = self.home / "service"
        service_home.mkdir(exist_ok=True)
        for path in (service_home, Path(self.env["PROMETHEUS_MULTIPROC_DIR"])):
            os.chown(path, user.pw_uid, user.pw_gid)
        self.service_user = user

    def _command(self, name: str, command: list[str], env: dict):
        """A function that starts `name` (again): its log appended to, as its user."""
        user = self.service_user if name in DROPPED else None
        options: dict = {}
        if user is not None:
            env = {**env, "HOME": str(self.home / "service"), "USER": user.pw_name,
                   "LOGNAME": user.pw_name}  # fmt: skip
            options = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}

        def start() -> subprocess.Popen:
            with open(self.home / f"{name}.log", "ab") as log:
                return subprocess.Popen(
                    command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True, **options,
                )  # fmt: skip

        return start

    def _spawn(self, name: str, command: list[str], env: dict | None = None) -> None:
        self.supervisor.add(name, self._command(name, command, env or self.env))

    def start_processes(self) -> None:
        """Start web, worker, beat and Flower under the supervisor."""
        self.drop_root()
        self.api_port = port_or_free(self.api_port)
        self.flower_port = port_or_free(self.flower_port)
        bin_dir = Path(sys.executable).parent
        # One gevent web process serves a laptop's API, dashboard and streams (WEB_CONCURRENCY
        # adds more); each more costs a Python process and its database pool.
        web_workers = self.env.get("WEB_CONCURRENCY", "1")
        self._spawn("web", [str(bin_dir / "gunicorn"), "--worker-class", "gevent",
                            "--workers", web_workers, "--bind", f"127.0.0.1:{self.api_port}",
                            "wsgi:app"])  # fmt: skip
        celery = [sys.executable, "-m", "celery", "-A", "tasks.worker"]
        self._spawn("worker", [*celery, "worker", "-Q", "control,agents", "-P", "threads",
                               "-c", str(self.worker_concurrency), "-l", "info",
                               "--without-gossip", "--without-mingle",
                               "-n", "standalone@%h"])  # fmt: skip
        schedule = self.home / ("service" if self.service_user else "") / "celerybeat-schedule"
        self._spawn("beat", [*celery, "beat", "-l", "info", "-s", str(schedule)])
        # Flower serves its own metrics; keep them out of the shared multiprocess directory.
        # It reads FLOWER_BASIC_AUTH from its environment: no password on a command line.
        flower_env = {k: v for k, v in self.env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        self._spawn("flower", [*celery, "flower", f"--port={self.flower_port}",
                               "--address=127.0.0.1"], env=flower_env)  # fmt: skip
        self.supervisor.watch()
        wait_for_port(self.api_port, timeout=60)
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Block until the API reports PostgreSQL and Redis ready, or a child died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_children()
            try:
                if requests.get(f"{self.api_url}/health/ready", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the API did not become ready; see {self.home / 'web.log'}")

    def check_children(self) -> None:
        """During startup: raise if the web process exited (it is not ready yet) or the
        supervisor gave up on a process. Later crashes are the supervisor's to restart."""
        for name, child in self.supervisor.children.items():
            if child.state == GAVE_UP or (name == "web" and child.exits):
                code = child.exits[-1] if child.exits else "?"
                raise RuntimeError(f"{name} exited with code {code}; see {self.home / name}.log")

    def serving(self) -> bool:
        """False once the supervisor gave up on every process."""
        children = self.supervisor.children.values()
        return not children or any(child.state != GAVE_UP for child in children)

    def stop(self) -> None:
        """Stop every child (also those waiting to be restarted), then the embedded servers."""
        self.supervisor.stop()
        for server in reversed(self.embedded):
            server.stop()


def issue_standalone_token(database_url: str, path: Path, name: str = "standalone") -> str:
    """Revoke earlier tokens named `name`, create a fresh admin one, save it to `path` (0600)."""

    def fresh(session: DbSession) -> str:
        for token in session.scalars(select(ApiToken).where(ApiToken.name == name)):
            tokens.revoke_token(session, token.id)
        return tokens.create_token(session, name, ["admin"])[1]

    secret = in_database(database_url, fresh)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(secret + "\n")
    return secret


def _raise_interrupt(signum, _frame) -> None:
    raise KeyboardInterrupt


def run_standalone(home: Path, port: int, example: bool = True) -> int:
    """Start everything, submit the example session, watch it, serve until Ctrl-C."""
    from .example import EXAMPLE_AGENTS, EXAMPLE_SESSION
    from .example_opencode import example_repository, opencode_agents, opencode_session

    stack = Stack(home=home, api_port=port)
    stoppers: list = []
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_interrupt)
    print("Starting the orchestrator (Ctrl-C stops everything)")
    try:
        stack.start_services()
        stack.migrate()
        token = issue_standalone_token(stack.env["DATABASE_URL"], stack.home / "admin-token")
        stack.start_processes()
        user, _, password = stack.env["FLOWER_BASIC_AUTH"].partition(":")
        print(f"  API         {stack.api_url}   (docs: {stack.api_url}/api/docs)")
        print(f"  Dashboard   {stack.api_url}/ui/   (sign in with the API token below)")
        print(f"  API token   {token}   (admin; also in {stack.home / 'admin-token'})")
        print(f"  Metrics     {stack.api_url}/metrics   (with the token)")
        print(f"  Flower      {stack.flower_url}   (user {user}, password {password})")
        print(f"  Logs        {stack.home}/*.log\n")
        client = ApiClient(stack.api_url, token)
        if example:
            agents, body = EXAMPLE_AGENTS, EXAMPLE_SESSION
            backend = _start_opencode(stack.home)
            if backend is not None:
                stoppers.append(backend.stop)
                agents = opencode_agents(backend)
                body = opencode_session(example_repository(stack.home))
            session = submit_example(client, agents, body)
            print(f"Example session {session['id']}:")
            final = progress.watch(stack.api_url, session["id"], headers=client.headers)
            print(f"\nThe example session ended {final['status']}; its files are in "
                  f"{final.get('workdir')}.")  # fmt: skip
        print(f"Serving. Submit more with:\n  export ORCH_TOKEN=$(cat {stack.home}/admin-token)\n"
              f"  orchestrator --api {stack.api_url} submit FILE --watch")  # fmt: skip
        while stack.serving():
            time.sleep(1)
        raise RuntimeError(f"every process kept crashing; see {stack.home}/*.log")
    except KeyboardInterrupt:
        print("\nStopping…")
        return EXIT_OK
    except (RuntimeError, CliError) as error:
        print(f"orchestrator: {error}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        for stop in stoppers:
            stop()
        stack.stop()


def _start_opencode(home: Path):
    """Start OpenCode for the example, or say why the shell example runs instead."""
    from app.drivers.opencode_server import OpenCodeServerError

    from .example_opencode import start_backend

    print("Starting OpenCode for the example (the first run installs it with npm)…")
    try:
        backend = start_backend(home)
    except (OpenCodeServerError, OSError) as error:
        print(f"  OpenCode is not available ({error}); the example uses shell agents.\n")
        return None
    model = "the scripted model server" if backend.model else backend.model_name
    print(f"  OpenCode    {backend.server.url}   (model: {model})\n")
    return backend


def submit_example(client, agents: list[dict], session: dict) -> dict:
    """Register the example agents (once) and submit the example session."""
    existing = {agent["name"] for agent in client.call("GET", "/api/v1/agents")}
    for agent in agents:
        if agent["name"] not in existing:
            client.call("POST", "/api/v1/agents", json=agent)
    return client.call("POST", "/api/v1/sessions", json=session)
