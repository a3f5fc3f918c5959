"""A lab of worker hosts on one machine, for tests/e2e/test_hosts.py and bench/hosts.py.

Each worker host is a network namespace (`ip netns` + a veth pair on a bridge) running one
Celery worker with its own WORKSPACE_ROOT; nothing but the network joins them. The root
namespace plays the server host: PostgreSQL and Redis (the embedded ones, also listening on
the bridge's address), `git daemon` serving the session's repository (git://, push enabled),
the API (gunicorn) and beat. Losing a host (`kill_host`) SIGKILLs every process in its
namespace and deletes its disk. Everything made is removed on `stop`, even after a failure.
Needs root (namespaces, veths); `netns_problem()` says why the lab cannot run here.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

from app.standalone.servers import EmbeddedPostgres, EmbeddedRedis, free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
FAST_RECOVERY = {  # short leases and beat intervals: a lost host's tasks come back in seconds
    "TASK_LEASE_SECONDS": "4", "TASK_HEARTBEAT_SECONDS": "1", "DISPATCH_GRACE_SECONDS": "3",
    "RECONCILE_INTERVAL_SECONDS": "1", "WATCHDOG_INTERVAL_SECONDS": "1",
}  # fmt: skip
_INHERITED_OUT = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND",
                  "WORKSPACE_ROOT", "PROMETHEUS_MULTIPROC_DIR", "WORKER_OPENCODE_URL")  # fmt: skip


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def netns_problem() -> str | None:
    """Why network namespaces cannot be made here (not root, no `ip`, no permission), or None."""
    if os.geteuid() != 0:
        return "the hosts lab needs root (ip netns, veth pairs)"
    if shutil.which("ip") is None or shutil.which("git") is None:
        return "the hosts lab needs the `ip` and `git` commands"
    probe = f"olprobe{os.getpid() % 100000}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns add is not permitted here: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def _subnet() -> str:
    """A 10.x.y.0/24 prefix that no interface of this machine uses."""
    used = _ip("-4", "-o", "addr").stdout
    while True:
        prefix = f"10.{random.randint(200, 250)}.{random.randint(1, 254)}"
        if f" {prefix}." not in used:
            return prefix


class HostsLab:
    """Three (or `hosts`) worker hosts and a server host; use as a context manager."""

    def __init__(self, home: Path, hosts: int = 3, concurrency: int = 8) -> None:
        self.home, self.count, self.concurrency = Path(home), hosts, concurrency
        self.tag = f"ol{uuid.uuid4().hex[:5]}"  # interface names stay under 15 characters
        self.prefix = _subnet()
        self.server_ip = f"{self.prefix}.1"
        self.namespaces = [f"{self.tag}h{i}" for i in range(hosts)]
        self.workers: dict[int, subprocess.Popen] = {}
        self.children: list[subprocess.Popen] = []
        self.servers: list = []
        self.env: dict[str, str] = {}
        self.api = self.repository_url = self.bare = self.database_url = ""
        self.token = ""

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> HostsLab:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()

    def start(self) -> None:
        """Network, services, repository, API, beat and one worker per host."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o755)
        self._network()
        self._services()
        self._repository()
        self.api = self._api()
        self.start_beat()
        starting = [self.start_worker(index, wait=False) for index in range(self.count)]
        for wait in starting:
            wait()

    def stop(self) -> None:
        """Stop every process and remove the namespaces, veths and bridge (idempotent)."""
        for index in list(self.workers):
            self._kill_namespace(index)
        for process in reversed(self.children):
            if process.poll() is None:
                process.terminate()
        for process in self.children:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self.children.clear()
        for server in reversed(self.servers):
            server.stop()
        self.servers.clear()
        for namespace in self.namespaces:
            for pid in _ip("netns", "pids", namespace, check=False).stdout.split():
                _signal(int(pid), signal.SIGKILL)
            _ip("netns", "del", namespace, check=False)
        _ip("link", "del", f"{self.tag}br", check=False)

    # -- the network ------------------------------------------------------------------------
    def _network(self) -> None:
        bridge = f"{self.tag}br"
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{self.server_ip}/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for index, namespace in enumerate(self.namespaces):
            outside, inside = f"{self.tag}v{index}", f"{self.tag}p{index}"
            _ip("netns", "add", namespace)
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", namespace)
            _ip("link", "set", outside, "master", bridge, "up")
            inner = ("netns", "exec", namespace, "ip")
            _ip(*inner, "addr", "add", f"{self.host_ip(index)}/24", "dev", inside)
            _ip(*inner, "link", "set", inside, "up")
            _ip(*inner, "link", "set", "lo", "up")

    def host_ip(self, index: int) -> str:
        """The address of worker host `index` on the lab's network."""
        return f"{self.prefix}.{10 + index}"

    # -- the server host ----------------------------------------------------------------------
    def _services(self) -> None:
        postgres = EmbeddedPostgres(self.home / "pg", durable=False, listen=(self.server_ip,),
                                    clients=(f"{self.prefix}.0/24",))  # fmt: skip
        postgres.start()
        self.servers.append(postgres)
        valkey = EmbeddedRedis(self.home / "redis", listen=(self.server_ip,))
        valkey.start()
        self.servers.append(valkey)
        self.database_url = _fresh_database(
            postgres.url.replace("@127.0.0.1:", f"@{self.server_ip}:")
        )
        redis_url = valkey.url.replace("@127.0.0.1:", f"@{self.server_ip}:")
        base = {k: v for k, v in os.environ.items() if k not in _INHERITED_OUT}
        self.env = {**base, **FAST_RECOVERY, "DATABASE_URL": self.database_url,
                    "REDIS_URL": redis_url, "SECRET_KEY": "hosts-lab-secret"}  # fmt: skip
        self.token = _admin_token(self.database_url)

    def _repository(self) -> None:
        """A bare repository with one commit on main, served by git daemon (push enabled)."""
        base = self.home / "git"
        self.bare = str(base / "repo.git")
        _git(base.parent, "init", "-q", "--bare", "-b", "main", self.bare)
        seed = self.home / "seed"
        _git(self.home, "clone", "-q", self.bare, str(seed))
        (seed / "README.md").write_text("hosts lab\n")
        _git(seed, "add", "-A")
        _git(seed, "-c", "user.name=lab", "-c", "user.email=lab@lab", "commit", "-qm", "seed")
        _git(seed, "push", "-q", "origin", "HEAD:main")
        port = free_port()
        self._spawn("git-daemon", ["git", "daemon", "--export-all", "--enable=receive-pack",
                                   f"--base-path={base}", f"--listen={self.server_ip}",
                                   f"--port={port}", "--reuseaddr", "--max-connections=0",
                                   str(base)])  # fmt: skip
        _wait_tcp(self.server_ip, port)
        self.repository_url = f"git://{self.server_ip}:{port}/repo.git"

    def _api(self) -> str:
        port = free_port()
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        self._spawn("web", [gunicorn, "--worker-class", "gevent", "--workers", "2",
                            "--bind", f"127.0.0.1:{port}", "wsgi:app"])  # fmt: skip
        wait_for_port(port, 60)
        return f"http://127.0.0.1:{port}"

    def start_beat(self) -> None:
        """One beat on the server host: its reconciler finds the lost hosts' tasks."""
        self._spawn("beat", [sys.executable, "-m", "celery", "-A", "tasks.worker", "beat",
                             "-l", "info", "-s", str(self.home / "beat-schedule")])  # fmt: skip

    def _spawn(self, name: str, command: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.home / f"{name}.log", "ab")
        process = subprocess.Popen(command, cwd=ROOT, env=env or self.env, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
        self.children.append(process)
        return process

    # -- worker hosts ----------------------------------------------------------------------
    def workspace(self, index: int) -> Path:
        """Worker host `index`'s WORKSPACE_ROOT (its own disk)."""
        return self.home / f"host-{index}" / "work"

    def start_worker(self, index: int, timeout: float = 90, wait: bool = True):
        """Start host `index`'s worker in its namespace and wait until it is ready (or, with
        `wait=False`, return the function that waits)."""
        self.workspace(index).mkdir(parents=True, exist_ok=True)
        env = {**self.env, "WORKSPACE_ROOT": str(self.workspace(index))}
        log_path = self.home / f"worker-{index}.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        command = ["ip", "netns", "exec", self.namespaces[index], sys.executable, "-m", "celery",
                   "-A", "tasks.worker", "worker", "-Q", "control,agents", "-P", "threads",
                   "-c", str(self.concurrency), "-l", "info", "--without-gossip",
                   "--without-mingle", "-n", f"host{index}-{uuid.uuid4().hex[:4]}@%h"]  # fmt: skip
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=open(log_path, "ab"),
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
        self.workers[index] = process
        deadline = time.monotonic() + timeout

        def ready() -> None:
            while b" ready." not in log_path.read_bytes()[offset:]:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker {index} did not start:\n"
                                       f"{self.log(f'worker-{index}')}")  # fmt: skip
                time.sleep(0.1)

        if not wait:
            return ready
        ready()
        return None

    def host_of(self, worker: str | None) -> int | None:
        """Which host's worker a task's `worker` column (host:pid) names."""
        pid = (worker or "").rpartition(":")[2]
        for index, process in self.workers.items():
            if str(process.pid) == pid:
                return index
        return None

    def kill_host(self, index: int) -> None:
        """Lose host `index` whole: SIGKILL every process in its namespace, delete its disk."""
        self._kill_namespace(index)
        shutil.rmtree(self.workspace(index).parent, ignore_errors=True)

    def _kill_namespace(self, index: int) -> None:
        for pid in _ip("netns", "pids", self.namespaces[index], check=False).stdout.split():
            _signal(int(pid), signal.SIGKILL)
        process = self.workers.pop(index, None)
        if process is not None:
            process.kill()
            process.wait(10)

    def log(self, name: str) -> str:
        """The tail of one process's log (`worker-0`, `beat`, `web`, `git-daemon`)."""
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    # -- the API and the repository ---------------------------------------------------------
    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        """One API call with the lab's admin token."""
        headers = {"Authorization": f"Bearer {self.token}"}
        return requests.request(method, f"{self.api}/api/v1{path}", headers=headers, timeout=30,
                                **kwargs)  # fmt: skip

    def submit(self, title: str, tasks: list[dict]) -> str:
        """Create a session on the lab's repository; return its id."""
        body = {"title": title, "prompt": title, "repository": {"url": self.repository_url},
                "dag": {"tasks": tasks}}  # fmt: skip
        response = self.call("POST", "/sessions", json=body)
        response.raise_for_status()
        return response.json()["id"]

    def wait_finished(self, session_id: str, timeout: float = 300) -> dict:
        """Poll the session until it finishes; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            session = self.call("GET", f"/sessions/{session_id}").json()
            if session["status"] in ("completed", "failed", "partially_completed", "cancelled"):
                return session
            time.sleep(0.2)
        raise TimeoutError(f"session {session_id} did not finish in {timeout}s")

    def git(self, *args: str) -> str:
        """A git command on the served bare repository (the server host's view)."""
        return _git(Path(self.bare), *args).stdout

    def is_ancestor(self, commit: str, ref: str) -> bool:
        """Whether `commit` is in the history of `ref` in the served repository."""
        done = subprocess.run(["git", "merge-base", "--is-ancestor", commit, ref], cwd=self.bare,
                              capture_output=True)  # fmt: skip
        return done.returncode == 0

    def completions(self, session_id: str) -> dict[str, int]:
        """How many times each task of the session was recorded completed (events)."""
        from sqlalchemy import create_engine, text

        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                rows = connection.execute(text(
                    "SELECT t.key, count(e.id) FROM session_tasks t LEFT JOIN session_events e"
                    " ON e.task_id = t.id AND e.type = 'task.completed'"
                    " WHERE t.session_id = :s GROUP BY t.key"), {"s": session_id})  # fmt: skip
                return {key: count for key, count in rows}
        finally:
            engine.dispose()


def register_shell_agent(lab: HostsLab, capacity: int) -> None:
    """One shell agent, with room for every task the lab runs at once."""
    body = {"name": f"lab-{uuid.uuid4().hex[:6]}", "type": "implementer", "driver": "shell",
            "capabilities": ["code_generation"], "capacity": capacity}  # fmt: skip
    lab.call("POST", "/agents", json=body).raise_for_status()


def wide_dag(width: int, seconds: float, integrate: bool = True) -> list[dict]:
    """`width` independent tasks (each writes its own file, then sleeps: I/O bound), and an
    integration step that merges them all."""
    tasks = [{"key": f"t{i:02d}", "command": f"echo t{i:02d} > t{i:02d}.txt && sleep {seconds}",
              "max_attempts": 5} for i in range(width)]  # fmt: skip
    if integrate:
        tasks.append({"key": "merge", "action": "integrate",
                      "depends_on": [task["key"] for task in tasks]})  # fmt: skip
    return tasks


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True,
                          timeout=60)  # fmt: skip


def _wait_tcp(host: str, port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _fresh_database(server_url: str) -> str:
    """A new, migrated database on the server of `server_url`."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from app.config import _normalize_database_url

    url = make_url(_normalize_database_url(server_url))
    name = f"orch_hosts_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    database_url = url.set(database=name).render_as_string(hide_password=False)
    subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, check=True,
                   env={**os.environ, "DATABASE_URL": database_url}, capture_output=True,
                   timeout=120)  # fmt: skip
    return database_url


def _admin_token(database_url: str) -> str:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from app.services.tokens import create_token

    engine = create_engine(database_url)
    with Session(engine) as session, session.begin():
        _, secret = create_token(session, "hosts-lab", ["admin"])
    engine.dispose()
    return secret
