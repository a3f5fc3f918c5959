"""The opencode driver against a real `opencode serve` whose model is the scripted model server."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from app.drivers.base import AgentSpec, DriverJob, DriverResult
from app.drivers.opencode import OpenCodeDriver
from app.drivers.opencode_client import BreakerRegistry
from app.drivers.opencode_server import (
    OpenCodeServer,
    OpenCodeServerError,
    install_opencode,
    scripted_provider_config,
)
from app.standalone.scripted_model import ScriptedModelServer
from app.workspaces import (
    branch_name,
    commit_all,
    create_worktree,
    ensure_repository,
    git,
    merge_branches,
)

pytestmark = pytest.mark.e2e

PASSWORD = "e2e-" + uuid.uuid4().hex


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(scope="session")
def opencode_binary() -> str:
    """The pinned opencode binary, installed once into .cache/ (skip only if it cannot be)."""
    try:
        return install_opencode()
    except OpenCodeServerError as exc:
        pytest.skip(f"opencode cannot be installed here: {exc}")


@pytest.fixture(scope="module")
def model() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer() as server:
        yield server


def _config(model: ScriptedModelServer) -> dict:
    config = scripted_provider_config(model.base_url)
    # A second provider whose server is down, for the "model unreachable" case.
    down = {"baseURL": f"http://127.0.0.1:{_free_port()}/v1", "apiKey": "not-a-real-key"}
    config["provider"]["down"] = {**config["provider"]["fake"], "options": down}
    config["enabled_providers"] = ["fake", "down"]
    return config


def _start(
    binary: str, state: Path, model: ScriptedModelServer, **kwargs: object
) -> OpenCodeServer:
    server = OpenCodeServer(
        binary,
        state,
        config=_config(model),
        extra_env={"npm_config_offline": "true"},  # no background plugin download from npm
        die_with_parent=True,
        **kwargs,
    )
    server.start(timeout=60)
    return server


@pytest.fixture(scope="module")
def opencode(
    opencode_binary: str, model: ScriptedModelServer, tmp_path_factory
) -> Iterator[OpenCodeServer]:
    server = _start(opencode_binary, tmp_path_factory.mktemp("opencode-state"), model)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    for name in ("alpha", "beta", "gamma"):
        (path / f"{name}.txt").write_text("value = 0\n")
    return ensure_repository(path)


def _agent(endpoint: str, **config: str) -> AgentSpec:
    return AgentSpec(
        id="agent-1",
        name="oc",
        driver="opencode",
        endpoint=endpoint,
        model="fake/scripted",
        config=config,
    )


def _job(
    agent: AgentSpec, workdir: Path, prompt: str, key: str = "task", timeout: float = 60
) -> DriverJob:
    return DriverJob(
        session_id="ses-e2e",
        task_id=f"task-{key}",
        task_key=key,
        attempt=1,
        title=f"e2e {key}",
        description="",
        agent=agent,
        workdir=str(workdir),
        timeout_seconds=timeout,
        prompt=prompt,
    )


def _driver(**kwargs: object) -> OpenCodeDriver:
    return OpenCodeDriver(breakers=BreakerRegistry(threshold=3, cooldown=30), **kwargs)


def _kinds(result: DriverResult, kind: str) -> list[dict]:
    return [e for e in result.events if e["type"] == kind]


def test_three_jobs_in_worktrees_write_edit_and_merge(opencode: OpenCodeServer, repo: Path) -> None:
    driver, agent = _driver(), _agent(opencode.url)
    names = ["alpha", "beta", "gamma"]
    trees = {name: create_worktree(repo, "ses-e2e", name) for name in names}
    prompts = {
        name: f"WRITE_FILE:{name}_notes.md:notes of {name}\\nline two\n"
        f"EDIT_FILE:{name}.txt:value = 0:value = {i}"
        for i, name in enumerate(names, start=1)
    }
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {
            n: pool.submit(driver.run, _job(agent, trees[n], prompts[n], n), threading.Event())
            for n in names
        }
        results = {name: future.result(timeout=120) for name, future in futures.items()}

    for i, name in enumerate(names, start=1):
        result = results[name]
        assert result.succeeded, result.error
        assert result.summary.startswith("Done: ran 2 scripted step(s)")
        assert sorted(result.files_changed) == sorted([f"{name}.txt", f"{name}_notes.md"])
        patches = {d["file"]: d for d in result.diff}
        assert f"+value = {i}" in patches[f"{name}.txt"]["patch"]
        assert patches[f"{name}_notes.md"]["status"] == "added"
        assert result.tokens["input"] > 0 and result.tokens["output"] > 0
        assert result.tokens["total"] >= result.tokens["input"] + result.tokens["output"]
        assert result.driver_session_id and result.driver_session_id.startswith("ses")
        tools = {(e["tool"], e["status"]) for e in _kinds(result, "tool")}
        assert {("write", "completed"), ("edit", "completed")} <= tools
        assert _kinds(result, "idle") and _kinds(result, "prompt.sent")
        assert (trees[name] / f"{name}_notes.md").read_text() == f"notes of {name}\nline two\n"
        assert commit_all(trees[name], f"task {name}")

    head = merge_branches(repo, [branch_name("ses-e2e", n) for n in names], "integration")
    for i, name in enumerate(names, start=1):
        assert git(repo, "show", f"{head}:{name}.txt").stdout == f"value = {i}\n"
        assert git(repo, "show", f"{head}:{name}_notes.md").stdout.startswith(f"notes of {name}")


def test_cancel_aborts_mid_turn_quickly(
    opencode: OpenCodeServer, model: ScriptedModelServer, repo: Path
) -> None:
    cancel = threading.Event()
    chunks = model.state.snapshot()["by_script"].get("SLOW_CHUNK", 0)

    def cancel_once_streaming() -> None:
        _wait_for(  # a few chunks in: the abort lands mid-stream, not before it
            lambda: model.state.snapshot()["by_script"].get("SLOW_CHUNK", 0) >= chunks + 3,
            30,
            "the slow stream",
        )
        cancel.set()

    canceller = threading.Thread(target=cancel_once_streaming, daemon=True)
    canceller.start()
    result = _driver().run(_job(_agent(opencode.url), repo, "SLOW:60"), cancel)
    canceller.join(timeout=5)

    assert not result.succeeded
    assert result.error.startswith("aborted (cancelled)") and "MessageAbortedError" in result.error
    assert _kinds(result, "error")[0]["name"] == "MessageAbortedError"
    assert result.summary.startswith("slow")  # the partial text is kept


def test_abort_from_outside_the_run(
    opencode: OpenCodeServer, model: ScriptedModelServer, repo: Path
) -> None:
    driver, agent = _driver(), _agent(opencode.url)
    before = model.state.snapshot()["by_script"].get("SLOW", 0)
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(driver.run, _job(agent, repo, "SLOW:60", "outside"), threading.Event())
        _wait_for(lambda: model.state.snapshot()["by_script"].get("SLOW", 0) > before, 30, "SLOW")
        sessions = requests.get(
            opencode.url + "/session", params={"directory": str(repo)}, timeout=5
        ).json()
        session_id = next(s["id"] for s in sessions if "[outside #1]" in s["title"])
        assert driver.abort(agent, session_id, str(repo))
        result = future.result(timeout=10)
    assert not result.succeeded and result.driver_session_id == session_id
    assert result.error == "MessageAbortedError: Aborted"
    assert driver.abort(_agent("http://127.0.0.1:9"), session_id) is False  # never raises


def test_deadline_aborts_the_turn(opencode: OpenCodeServer, repo: Path) -> None:
    result = _driver().run(
        _job(_agent(opencode.url), repo, "SLOW:60", timeout=2.5), threading.Event()
    )
    assert not result.succeeded
    assert result.error.startswith("aborted (timeout)")


def test_model_http_500_is_retried_by_opencode_then_fails(
    opencode: OpenCodeServer, repo: Path
) -> None:
    # retry-after-ms makes OpenCode's own back-off (2 s x 2^n, about 65 s) short.
    result = _driver().run(_job(_agent(opencode.url), repo, "HTTP_ERROR:500:20"), threading.Event())
    assert not result.succeeded
    assert result.error == "APIError: scripted error 500"
    assert result.retryable
    retries = _kinds(result, "retry")
    assert [e["attempt"] for e in retries] == [1, 2, 3, 4, 5]
    assert all(e["message"] == "scripted error 500" for e in retries)


def test_transient_model_errors_recover(
    opencode: OpenCodeServer, model: ScriptedModelServer, repo: Path
) -> None:
    model.state.control({"fail_next": 2, "status": 503, "retry_after_ms": 20})
    result = _driver().run(_job(_agent(opencode.url), repo, "just say hello"), threading.Event())
    assert result.succeeded, result.error
    assert result.summary == "just say hello"
    assert len(_kinds(result, "retry")) == 2


def test_model_server_down_fails_with_the_connection_error(
    opencode: OpenCodeServer, repo: Path
) -> None:
    agent = AgentSpec(
        id="a", name="oc", driver="opencode", endpoint=opencode.url, model="down/scripted"
    )
    # OpenCode itself retries an unreachable model for about 65 s; our deadline cuts that short
    # (long enough for OpenCode's first retry to be reported on a loaded machine).
    result = _driver().run(_job(agent, repo, "hello", timeout=12), threading.Event())
    assert not result.succeeded
    assert result.retryable
    assert "while OpenCode retried the model" in result.error
    assert "connect" in result.error.lower()
    assert _kinds(result, "retry")


def test_permission_prompt_is_rejected_not_hung(opencode: OpenCodeServer, repo: Path) -> None:
    (repo / ".env").write_text("SECRET=do-not-read\n")
    result = _driver().run(
        _job(_agent(opencode.url), repo, "ASK_PERMISSION:.env", timeout=30), threading.Event()
    )
    assert result.succeeded, result.error
    asked = _kinds(result, "permission.asked")
    assert asked and asked[0]["permission"] == "read"
    assert _kinds(result, "permission.rejected")
    tool = [e for e in _kinds(result, "tool") if e["status"] == "error"]
    assert tool and "rejected" in tool[0]["error"]


class _Forwarder:
    """A TCP relay from a fixed port to the real server: "the endpoint comes back"."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", port))
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


def test_circuit_breaker_opens_and_closes_again(opencode: OpenCodeServer, repo: Path) -> None:
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    registry = BreakerRegistry(threshold=2, cooldown=1.0)
    driver = OpenCodeDriver(breakers=registry, retry_attempts=2)
    job = _job(_agent(endpoint), repo, "hello again")

    for _ in range(2):
        failed = driver.run(job, threading.Event())
        assert not failed.succeeded and failed.retryable
        assert "unavailable" in failed.error and "cannot connect" in failed.error
    assert registry.get(endpoint).state == "open"
    refused = driver.run(job, threading.Event())
    assert not refused.succeeded and refused.retryable and "circuit open" in refused.error

    host, real_port = opencode.url.removeprefix("http://").split(":")
    forwarder = _Forwarder(port, (host, int(real_port)))
    try:
        _wait_for(lambda: registry.get(endpoint).state == "half_open", 5, "the cool-down")
        result = driver.run(job, threading.Event())
        assert result.succeeded, result.error
        assert registry.get(endpoint).state == "closed"
    finally:
        forwarder.close()


@pytest.fixture
def secured(
    opencode_binary: str, model: ScriptedModelServer, tmp_path: Path
) -> Iterator[OpenCodeServer]:
    server = _start(opencode_binary, tmp_path / "secured-state", model, password=PASSWORD)
    try:
        yield server
    finally:
        server.stop()


def test_basic_auth(secured: OpenCodeServer, repo: Path) -> None:
    assert requests.get(secured.url + "/global/health", timeout=5).status_code == 401
    registry = BreakerRegistry(threshold=1, cooldown=30)
    driver = OpenCodeDriver(breakers=registry)

    anonymous = driver.run(_job(_agent(secured.url), repo, "hi"), threading.Event())
    assert not anonymous.succeeded and not anonymous.retryable
    assert "401" in anonymous.error
    wrong = driver.run(_job(_agent(secured.url, password="wrong"), repo, "hi"), threading.Event())
    assert not wrong.succeeded and "401" in wrong.error
    assert PASSWORD not in wrong.error
    assert registry.get(secured.url).state == "closed"  # a refusal is not an outage

    allowed = driver.run(
        _job(_agent(secured.url, password=PASSWORD), repo, "hello with auth"), threading.Event()
    )
    assert allowed.succeeded, allowed.error
    assert allowed.summary == "hello with auth"
    named = driver.run(
        _job(_agent(secured.url, username="opencode", password=PASSWORD), repo, "named user"),
        threading.Event(),
    )
    assert named.succeeded, named.error


def test_scripted_plan_answers_a_structured_output_prompt(
    opencode: OpenCodeServer, repo: Path
) -> None:
    params = {"directory": str(repo)}
    session = requests.post(
        opencode.url + "/session", params=params, json={"title": "plan"}, timeout=10
    )
    schema = {"type": "object", "required": ["tasks"], "properties": {"tasks": {"type": "array"}}}
    body = {
        "parts": [{"type": "text", "text": "PLAN_JSON:"}],
        "format": {"type": "json_schema", "schema": schema, "retryCount": 1},
    }
    url = f"{opencode.url}/session/{session.json()['id']}/message"
    reply = requests.post(url, params=params, json=body, timeout=60).json()
    assert "error" not in reply["info"]
    assert [t["key"] for t in reply["info"]["structured"]["tasks"]] == [
        "design",
        "implement",
        "test",
    ]
