"""The `opencode` driver: a task is one prompt turn in a fresh session of an `opencode serve`."""

from __future__ import annotations

import logging
import re
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import app.drivers.endpoints as endpoints
from app.drivers.base import AgentSpec, DriverJob, DriverResult
from app.drivers.opencode_client import (
    BREAKERS,
    BreakerRegistry,
    OpenCodeAuthError,
    OpenCodeClient,
    OpenCodeError,
    OpenCodeUnavailable,
    Timeouts,
)
from app.drivers.opencode_events import EventStream, StreamClosed
from app.drivers.opencode_turn import Turn, build_result, diff_covers, is_settled, patched_files

logger = logging.getLogger(__name__)

# Session rules that keep a headless turn from waiting on a human (session rules override config).
HEADLESS_RULES = [
    {"permission": "question", "pattern": "*", "action": "deny"},
    {"permission": "external_directory", "pattern": "*", "action": "deny"},
    {"permission": "doom_loop", "pattern": "*", "action": "deny"},
    {"permission": "edit", "pattern": "*", "action": "allow"},
    {"permission": "bash", "pattern": "*", "action": "allow"},
]
REJECT_MESSAGE = (
    "This run is unattended, so nobody can grant permissions; the orchestrator rejected this "
    "request. Carry on without it."
)
_USERINFO = re.compile(r"//[^/@]*@")
_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="opencode-driver")


class OpenCodeDriver:
    """Runs a DriverJob on the OpenCode server at `job.agent.endpoint`; never raises for it."""

    name = "opencode"

    def __init__(
        self,
        *,
        breakers: BreakerRegistry | None = None,
        timeouts: Timeouts | None = None,
        retry_attempts: int = 3,
        abort_grace: float = 5.0,
        settle_timeout: float = 3.0,
        poll_interval: float = 0.1,
        quiet_status_check: float = 15.0,
    ) -> None:
        self.breakers = breakers or BREAKERS
        self.timeouts = timeouts or Timeouts()
        self.retry_attempts = retry_attempts
        self.abort_grace = abort_grace
        self.settle_timeout = settle_timeout
        self.poll_interval = poll_interval
        self.quiet_status_check = quiet_status_check

    def run(self, job: DriverJob, cancel: threading.Event) -> DriverResult:
        """Run the job's prompt as one turn and report its reply, diff, tokens and events."""
        turn = Turn(time.monotonic())
        ids = f"session_id={job.session_id} task_id={job.task_id} attempt={job.attempt}"
        if job.agent.endpoint == endpoints.LOCAL:  # a host-free profile: this worker's server
            if not endpoints.worker_server():
                logger.warning("opencode_no_local_server %s", ids)
                return turn.failure(
                    "agent is served by the OpenCode server beside its worker (endpoint "
                    f"'local'), and this worker has none ({endpoints.WORKER_SETTING} unset)",
                    retryable=True,
                )
            job = replace(job, agent=replace(job.agent, endpoint=endpoints.worker_server()))
        endpoint = job.agent.endpoint
        shown = _USERINFO.sub("//", endpoint or "")  # never log credentials
        if not endpoint:
            return turn.failure("agent has no OpenCode endpoint")
        refused = endpoints.refusal(endpoint)
        if refused:
            logger.warning("opencode_endpoint_refused %s endpoint=%s", ids, shown)
            return turn.failure(f"opencode server {shown} refused: {refused}")
        breaker = self.breakers.get(endpoint)
        if not breaker.allow():
            wait = breaker.retry_after()
            logger.warning(
                "opencode_circuit_open %s endpoint=%s retry_after=%.1f", ids, shown, wait
            )
            message = f"opencode server {shown} unavailable: circuit open, next try in {wait:.0f}s"
            return turn.failure(message, retryable=True)
        client = self.client(job.agent, job.workdir)
        logger.info("opencode_run_start %s endpoint=%s workdir=%s", ids, shown, job.workdir)
        try:
            result = self._run(job, cancel, client, turn)
            breaker.record_success()
        except OpenCodeUnavailable as exc:
            breaker.record_failure()
            result = turn.failure(f"opencode server unavailable: {exc}", retryable=True)
        except OpenCodeError as exc:
            breaker.record_success()  # it answered; a refusal is not an outage
            result = turn.failure(f"opencode request failed: {exc}")
        except Exception as exc:  # a driver bug must not kill the worker; report it instead
            breaker.release()
            logger.exception("opencode_driver_error %s", ids)
            result = turn.failure(f"opencode driver error: {type(exc).__name__}: {exc}")
        finally:
            if turn.stream is not None:
                turn.stream.close()
            client.close()
        logger.info(
            "opencode_run_done %s opencode_session=%s succeeded=%s duration_ms=%d error=%s",
            ids,
            turn.session_id,
            result.succeeded,
            (time.monotonic() - turn.started) * 1000,
            result.error,
        )
        return result

    def abort(self, agent: AgentSpec, driver_session_id: str, workdir: str | None = None) -> bool:
        """Abort a running OpenCode session (e.g. for the reconciler); True if the server agreed."""
        client = self.client(agent, workdir)
        try:
            return client.abort(driver_session_id)
        except OpenCodeError as exc:
            logger.warning(
                "opencode_abort_failed opencode_session=%s error=%s", driver_session_id, exc
            )
            return False
        finally:
            client.close()

    def client(self, agent: AgentSpec, workdir: str | None) -> OpenCodeClient:
        """An OpenCodeClient for the agent's server, credentials and our directory."""
        config = agent.config or {}
        return OpenCodeClient(
            endpoints.resolve(agent.endpoint) or "",
            workdir,
            username=config.get("username"),
            password=config.get("password"),
            timeouts=self.timeouts,
            retry_attempts=self.retry_attempts,
        )

    # -- the turn -------------------------------------------------------------------------
    def _run(
        self, job: DriverJob, cancel: threading.Event, client: OpenCodeClient, turn: Turn
    ) -> DriverResult:
        if cancel.is_set():
            return turn.failure("aborted (cancelled) before the prompt was sent")
        turn.stream = client.events().start()  # subscribe first; it connects while we set up
        health: Future[dict[str, Any]] = _POOL.submit(client.health)
        title = f"{job.title} [{job.task_key} #{job.attempt}]"[:200]
        try:
            session = client.create_session(title, HEADLESS_RULES)
        finally:
            status = health.result()  # raises OpenCodeUnavailable when the server is down
        if not isinstance(status, dict) or not status.get("healthy"):
            raise OpenCodeUnavailable("server reports unhealthy (HTTP 200)")  # never its words
        turn.session_id = session["id"]
        self._wait_connected(turn.stream)
        text = job.prompt or job.description or job.title
        posted_ms = round((time.monotonic() - turn.started) * 1000, 1)
        client.prompt_async(turn.session_id, text, job.agent.model)
        turn.note("prompt.sent", opencode_session=turn.session_id, posted_ms=posted_ms)
        abort_reason = self._follow(job, cancel, client, turn)
        turn.stream.close()
        diff: Future[list[dict[str, Any]]] | None = None
        if turn.user_message_id:
            diff = _POOL.submit(client.diff, turn.session_id, turn.user_message_id)
        messages = self._settled_messages(client, turn.session_id)
        return build_result(turn, messages, self._diff(client, turn, messages, diff), abort_reason)

    def _wait_connected(self, stream: EventStream) -> None:
        try:
            stream.wait_connected(self.timeouts.connect + self.timeouts.health)
        except StreamClosed as closed:
            if closed.auth_failed:
                raise OpenCodeAuthError(f"event stream refused: {closed.reason}", 401) from closed
            raise OpenCodeUnavailable(f"event stream: {closed.reason}") from closed

    def _follow(
        self, job: DriverJob, cancel: threading.Event, client: OpenCodeClient, turn: Turn
    ) -> str | None:
        """Follow events until our session is idle; abort on cancel or deadline; return why."""
        deadline = turn.started + job.timeout_seconds
        abort_reason: str | None = None
        abort_deadline = 0.0
        while not turn.idle:
            now = time.monotonic()
            if abort_reason is None and (cancel.is_set() or now >= deadline):
                abort_reason = "cancelled" if cancel.is_set() else "timeout"
                if cancel.is_set() and getattr(job.meter, "interrupted", None):
                    abort_reason = "budget spent"
                turn.note("abort", reason=abort_reason)
                self._abort_quietly(client, turn)
                abort_deadline = now + self.abort_grace
            elif abort_reason is not None and now >= abort_deadline:
                turn.note("abort.unconfirmed", reason=abort_reason)
                break
            assert turn.stream is not None
            try:
                event = turn.stream.get(timeout=self.poll_interval)
            except StreamClosed as closed:
                self._reconnect(client, turn, closed)
                continue
            if event is not None:
                request = turn.apply(event)
                if request is not None:
                    self._reject(client, turn, request, event.get("type", ""))
                if turn.usage_changed and job.meter is not None:
                    turn.usage_changed = False  # a spent budget sets `cancel`: abort next
                    job.meter.usage(*turn.running_usage())
            elif turn.active and now - turn.last_event > self.quiet_status_check:
                turn.last_event = now
                self._idle_by_status(client, turn)
        return abort_reason

    def _reject(self, client: OpenCodeClient, turn: Turn, props: dict[str, Any], kind: str) -> None:
        """Nobody can answer a prompt in a headless run: reject it so the turn goes on."""
        what = kind.split(".")[0]
        request_id = props.get("id", "")
        patterns = props.get("patterns") or []
        turn.note(
            f"{what}.asked", id=request_id, permission=props.get("permission"), patterns=patterns
        )
        try:
            if what == "permission":
                client.reply_permission(request_id, "reject", REJECT_MESSAGE)
            else:
                client.reject_question(request_id)
            turn.note(f"{what}.rejected", id=request_id)
        except OpenCodeError as exc:
            turn.note(f"{what}.reject_failed", id=request_id, error=str(exc))
        logger.info(
            "opencode_%s_rejected opencode_session=%s id=%s", what, turn.session_id, request_id
        )

    def _reconnect(self, client: OpenCodeClient, turn: Turn, closed: StreamClosed) -> None:
        if closed.auth_failed:
            raise OpenCodeAuthError(f"event stream refused: {closed.reason}", 401)
        turn.reconnects += 1
        if turn.reconnects > 3:
            raise OpenCodeUnavailable(f"event stream lost: {closed.reason}")
        turn.note("stream.reconnect", reason=closed.reason)
        assert turn.stream is not None
        turn.stream.close()
        time.sleep(min(2.0, 0.2 * 2**turn.reconnects))  # back off before hammering a failing server
        turn.stream = client.events().start()
        self._wait_connected(turn.stream)
        if turn.active:
            self._idle_by_status(client, turn)  # idle may have passed while we were away

    def _idle_by_status(self, client: OpenCodeClient, turn: Turn) -> None:
        if turn.session_id not in client.status():
            turn.idle = True
            turn.note("idle", via="status")

    def _abort_quietly(self, client: OpenCodeClient, turn: Turn) -> None:
        try:
            client.abort(turn.session_id or "")
        except OpenCodeError as exc:
            turn.note("abort.failed", error=str(exc))

    # -- the result -----------------------------------------------------------------------
    def _settled_messages(self, client: OpenCodeClient, session_id: str) -> list[dict[str, Any]]:
        """Messages once the last reply is final: an error lands 10-50 ms after session.idle."""
        deadline = time.monotonic() + self.settle_timeout
        messages = client.messages(session_id)
        while not is_settled(messages) and time.monotonic() < deadline:
            time.sleep(0.03)
            messages = client.messages(session_id)
        return messages

    def _diff(
        self,
        client: OpenCodeClient,
        turn: Turn,
        messages: list[dict[str, Any]],
        pending: Future[list[dict[str, Any]]] | None,
    ) -> list[dict[str, Any]]:
        """The turn's diff, fetched while the messages were read; a failure only costs the diff.

        OpenCode folds a step's patch into the turn's diff in the background, which under load
        can finish after session.idle: re-read until every patched file is in it (bounded).
        """
        users = [m["info"]["id"] for m in messages if (m.get("info") or {}).get("role") == "user"]
        user_id = turn.user_message_id or (users[-1] if users else None)
        if user_id is None or turn.session_id is None:
            return []
        patched = patched_files(messages)
        deadline = time.monotonic() + self.settle_timeout
        try:
            diff = (
                pending.result() if pending is not None else client.diff(turn.session_id, user_id)
            )
            while not diff_covers(diff, patched) and time.monotonic() < deadline:
                time.sleep(0.05)
                diff = client.diff(turn.session_id, user_id)
        except OpenCodeError as exc:
            turn.note("diff.failed", error=str(exc))
            return []
        if not diff_covers(diff, patched):
            turn.note("diff.incomplete", patched=sorted(patched))
        return diff
