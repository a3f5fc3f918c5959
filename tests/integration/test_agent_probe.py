"""Health checks against real local HTTP servers: a redirect is not followed (and is unhealthy),
and nothing a server answers is copied into the agent's row, only fixed short reasons."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import text

from app.drivers.opencode_client import EndpointRefused, OpenCodeClient, OpenCodeRedirect
from app.services.maintenance import probe
from models import Agent
from models.enums import AgentStatus
from tasks import maintenance as jobs

SECRET = "password=hunter2 AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG token=orch_abcdef"


class Server:
    """A real HTTP server in a thread that answers every request with one canned reply and
    records what it received."""

    def __init__(self, status: int, body: bytes = b"", headers: dict | None = None):
        self.status, self.body, self.headers = status, body, headers or {}
        self.requests: list[tuple[str, str, str | None]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                owner.requests.append((self.command, self.path, self.headers.get("Authorization")))
                self.send_response(owner.status)
                for name, value in owner.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(owner.body)))
                self.end_headers()
                self.wfile.write(owner.body)

            do_GET = do_POST = _answer  # http.server's naming

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self):
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def servers():
    started = []

    def start(*args, **kwargs):
        started.append(Server(*args, **kwargs))
        return started[-1]

    yield start
    for server in started:
        server.close()


HEALTHY = b'{"healthy": true, "version": "1"}'
CREDENTIALS = {"username": "opencode", "password": "probe-password"}


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed_and_is_unhealthy(db, servers, status):
    target = servers(200, HEALTHY)
    redirector = servers(status, b"", {"Location": f"{target.url}/global/health"})
    reason = probe("opencode", redirector.url, CREDENTIALS)
    assert reason == f"server answered a redirect (HTTP {status}), which is not followed"
    assert len(redirector.requests) == 1 and target.requests == []  # the password went nowhere
    client = OpenCodeClient(redirector.url, password="probe-password", retry_attempts=1)
    with pytest.raises(OpenCodeRedirect):
        client.create_session("t")
    client.close()
    assert target.requests == []


@pytest.mark.parametrize(("status", "body", "reason"), [
    (503, SECRET.encode(), "server reports unhealthy (HTTP 503)"),
    (500, b'{"error": "' + SECRET.encode() + b'"}', "server reports unhealthy (HTTP 500)"),
    (200, b'{"healthy": false, "detail": "' + SECRET.encode() + b'"}',
     "server reports unhealthy (HTTP 200)"),
    (200, SECRET.encode(), "server answered no health report (HTTP 200)"),
    (404, SECRET.encode(), "server reports unhealthy (HTTP 404)"),
    (401, SECRET.encode(), "server refused the credentials (HTTP 401)"),
])  # fmt: skip
def test_the_probe_reason_is_fixed_text_never_the_servers_answer(db, servers, status, body, reason):
    server = servers(status, body, {"Content-Type": "application/json"})
    assert probe("opencode", server.url, CREDENTIALS) == reason


def test_the_health_job_stores_no_byte_of_the_answer_in_the_agent(db, servers, monkeypatch):
    def inline(task, calls):  # run the per-agent checks here, not on a worker
        for args in calls:
            task(*args)
        return len(calls)

    monkeypatch.setattr(jobs, "fan_out", inline)
    server = servers(503, SECRET.encode())
    agent = Agent(name="oc-leaky", type="implementer", driver="opencode", endpoint=server.url,
                  capabilities=["code_generation"], config=CREDENTIALS)  # fmt: skip
    db.add(agent)
    db.commit()
    for _ in range(2):  # two failures in a row make it unhealthy
        jobs.agent_health(heartbeat_timeout_s=120, failures_before_unhealthy=2)
    db.expire_all()
    stored = db.get(Agent, agent.id)
    assert stored.status is AgentStatus.UNHEALTHY
    assert stored.health_reason == "server reports unhealthy (HTTP 503)"
    row = db.execute(text("SELECT row_to_json(agents)::text FROM agents WHERE id = :id"),
                     {"id": agent.id}).scalar_one()  # fmt: skip
    for fragment in ("hunter2", "wJalrXUtnFEMI", "orch_abcdef"):
        assert fragment not in row


def test_an_endpoint_outside_the_allow_list_is_never_called(app, db, servers, monkeypatch):
    server = servers(200, HEALTHY)
    assert probe("opencode", server.url, {}, timeout=2) is None
    monkeypatch.setitem(app.config, "AGENT_ENDPOINT_ALLOW", "oc.internal")
    calls = len(server.requests)
    assert probe("opencode", server.url, {}) == "endpoint not allowed by AGENT_ENDPOINT_ALLOW"
    with pytest.raises(EndpointRefused):
        OpenCodeClient(server.url)
    assert len(server.requests) == calls


def test_an_unreachable_server_gets_a_fixed_reason(db):
    reason = probe("opencode", "http://127.0.0.1:9", {}, timeout=2)
    assert reason == "server unreachable (cannot connect)"
