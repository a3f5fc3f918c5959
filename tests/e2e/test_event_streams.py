"""The web process exactly as the Procfile runs it (gunicorn with gevent workers): open event
streams hold no request thread, so the API keeps answering with more streams open than the old
process model had threads (2 workers x 4), and every stream gets the events committed while it
is open."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from app.services import sessions
from app.services.events import record_event
from app.standalone.servers import free_port
from tests.conftest import ADMIN_TOKEN_ID, ROOT, ensure_token, wait_until

pytestmark = pytest.mark.e2e

STREAMS = 12  # more than the 8 request threads of the old process model


@pytest.fixture
def web(app, database_url, redis_url, services_root):
    """The Procfile's `web` command on the test services."""
    lines = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines())
    home = services_root / f"procfile-web-{os.getpid()}-{free_port()}"
    home.mkdir()
    port = free_port()
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # gunicorn
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "PORT": str(port),
           "PROMETHEUS_MULTIPROC_DIR": str(home / "metrics"), "PATH": path}  # fmt: skip
    with open(home / "web.log", "ab") as log:
        process = subprocess.Popen(["bash", "-c", lines["web"]], cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def ready():
        assert process.poll() is None, (home / "web.log").read_text()[-3000:]
        try:
            return requests.get(f"{url}/health/live", timeout=2).ok
        except requests.RequestException:
            return False

    wait_until(ready, 60, message="the Procfile's web process")
    yield url
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(40)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def open_stream(url: str, session_id: str, token: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(
        f"GET /api/v1/sessions/{session_id}/events HTTP/1.1\r\nHost: {host}\r\n"
        f"Accept: text/event-stream\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    return sock


def read_until(sock: socket.socket, marker: bytes, received: bytes = b"") -> bytes:
    """What the stream sent, read until `marker` arrived (the socket's timeout bounds it)."""
    while marker not in received:
        chunk = sock.recv(65536)
        assert chunk, f"the stream closed before {marker!r}: {received[-500:]!r}"
        received += chunk
    return received


def test_the_api_answers_while_more_streams_are_open_than_it_once_had_threads(
    web, app, db, admin_token, redis_client
):
    ensure_token(app, ADMIN_TOKEN_ID, admin_token, ["admin"])
    task = {"key": "a", "command": "true", "depends_on": [], "description": "",
            "required_capabilities": [], "optional": False, "timeout_seconds": 60,
            "max_attempts": 1, "estimate_hours": None}  # fmt: skip
    session, _ = sessions.create_session(
        db, {"title": "watched", "prompt": "p", "dag": {"tasks": [task]}}
    )
    sessions.start_session(db, session)  # queued; no launch is sent, so it stays open
    db.commit()
    streams = [open_stream(web, session.id, admin_token) for _ in range(STREAMS)]
    try:
        received = [read_until(sock, b"event: session.queued\n") for sock in streams]
        assert all(data.startswith(b"HTTP/1.1 200") for data in received)
        headers = {"Authorization": f"Bearer {admin_token}"}
        assert requests.get(f"{web}/health/live", timeout=30).status_code == 200
        detail = requests.get(f"{web}/api/v1/sessions/{session.id}", headers=headers, timeout=30)
        assert detail.status_code == 200 and detail.json()["status"] == "queued"

        record_event(db, session.id, "test.live", n=1)  # committed while the streams are open
        db.commit()
        for sock, data in zip(streams, received, strict=True):
            assert b"event: test.live\n" in read_until(sock, b"event: test.live\n", data)
    finally:
        for sock in streams:
            sock.close()
