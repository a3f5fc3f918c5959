"""The `opencode` driver: one task is one prompt turn in a fresh session of a real `opencode serve`."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

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
MAX_EVENTS = 500


class _Turn:
    """What the driver learned about one turn while following the event stream."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.session_id: str | None = None
        self.stream: EventStream | None = None
        self.events: list[dict[str, Any]] = []
        self.tool_status: dict[str, str] = {}
        self.active = False
        self.idle = False
        self.last_event = started
        self.reconnects = 0

    def note(self, kind: str, **fields: Any) -> None:
        """Record a notable event with its time since the run started."""
        if len(self.events) < MAX_EVENTS:
            elapsed_ms = round((time.monotonic() - self.started) * 1000, 1)
            self.events.append({"type": kind, "t_ms": elapsed_ms, **fields})


class OpenCodeDriver:
    """Runs a DriverJob on the OpenCode server at `job.agent.endpoint`; never raises for task errors."""

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
        turn = _Turn(time.monotonic())
        endpoint = job.agent.endpoint
        ids = f"session_id={job.session_id} task_id={job.task_id} attempt={job.attempt}"
        if not endpoint:
            return DriverResult(succeeded=False, error="agent has no OpenCode endpoint")
        breaker = self.breakers.get(endpoint)
        if not breaker.allow():
            wait = breaker.retry_after()
            logger.warning("opencode_circuit_open %s endpoint=%s retry_after=%.1f", ids, endpoint, wait)
            message = f"opencode server {endpoint} unavailable: circuit open, next try in {wait:.0f}s"
            return DriverResult(succeeded=False, error=message, retryable=True)
        client = self.client(job.agent, job.workdir)
        logger.info("opencode_run_start %s endpoint=%s workdir=%s", ids, endpoint, job.workdir)
        try:
            result = self._run(job, cancel, client, turn)
            breaker.record_success()
        except OpenCodeUnavailable as exc:
            breaker.record_failure()
            result = self._failure(turn, f"opencode server unavailable: {exc}", retryable=True)
        except OpenCodeError as exc:
            breaker.record_success()
            result = self._failure(turn, f"opencode request failed: {exc}")
        except Exception as exc:  # a driver bug must not kill the worker; report it instead
            breaker.release()
            logger.exception("opencode_driver_error %s", ids)
            result = self._failure(turn, f"opencode driver error: {type(exc).__name__}: {exc}")
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
        """Abort a running OpenCode session (e.g. from the reconciler); True if the server agreed."""
        client = self.client(agent, workdir)
        try:
            return client.abort(driver_session_id)
        except OpenCodeError as exc:
            logger.warning("opencode_abort_failed opencode_session=%s error=%s", driver_session_id, exc)
            return False
        finally:
            client.close()

    def client(self, agent: AgentSpec, workdir: str | None) -> OpenCodeClient:
        """An OpenCodeClient for the agent's server, credentials and our directory."""
        config = agent.config or {}
        return OpenCodeClient(
            agent.endpoint or "",
            workdir,
            username=config.get("username"),
            password=config.get("password"),
            timeouts=self.timeouts,
            retry_attempts=self.retry_attempts,
        )

    # -- the turn -------------------------------------------------------------------------
    def _run(
        self, job: DriverJob, cancel: threading.Event, client: OpenCodeClient, turn: _Turn
    ) -> DriverResult:
        if cancel.is_set():
            return self._failure(turn, "aborted (cancelled) before the prompt was sent")
        turn.stream = client.events().start()  # subscribe first; it connects while we set up
        health = client.health()
        if not health.get("healthy"):
            raise OpenCodeUnavailable(f"server reports unhealthy: {health}")
        title = f"{job.title} [{job.task_key} #{job.attempt}]"[:200]
        session = client.create_session(title, HEADLESS_RULES)
        turn.session_id = session["id"]
        self._wait_connected(turn.stream)
        text = job.prompt or job.description or job.title
        client.prompt_async(turn.session_id, text, job.agent.model)
        turn.note("prompt.sent", opencode_session=turn.session_id)
        abort_reason = self._follow(job, cancel, client, turn)
        turn.stream.close()
        return self._collect(client, turn, abort_reason)

    def _wait_connected(self, stream: EventStream) -> None:
        try:
            stream.wait_connected(self.timeouts.connect + self.timeouts.health)
        except StreamClosed as closed:
            if closed.auth_failed:
                raise OpenCodeAuthError(f"event stream refused: {closed.reason}", 401) from closed
            raise OpenCodeUnavailable(f"event stream: {closed.reason}") from closed

    def _follow(
        self, job: DriverJob, cancel: threading.Event, client: OpenCodeClient, turn: _Turn
    ) -> str | None:
        """Handle events until our session is idle; abort on cancel or deadline. Returns the abort reason."""
        deadline = turn.started + job.timeout_seconds
        abort_reason: str | None = None
        abort_deadline = 0.0
        while not turn.idle:
            now = time.monotonic()
            if abort_reason is None and (cancel.is_set() or now >= deadline):
                abort_reason = "cancelled" if cancel.is_set() else "timeout"
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
                self._handle(client, turn, event)
            elif turn.active and now - turn.last_event > self.quiet_status_check:
                turn.last_event = now
                self._idle_by_status(client, turn)
        return abort_reason

    def _handle(self, client: OpenCodeClient, turn: _Turn, event: dict[str, Any]) -> None:
        kind = event.get("type")
        props = event.get("properties") or {}
        part = props.get("part") or {}
        if (props.get("sessionID") or part.get("sessionID")) != turn.session_id:
            return
        turn.active = True
        turn.last_event = time.monotonic()
        status = props.get("status") or {}
        if kind == "session.idle" or (kind == "session.status" and status.get("type") == "idle"):
            turn.idle = True
            turn.note("idle")
        elif kind == "session.status" and status.get("type") == "retry":
            turn.note("retry", attempt=status.get("attempt"), message=status.get("message"))
        elif kind == "session.error":
            error = props.get("error") or {}
            message = (error.get("data") or {}).get("message") or error.get("message")
            turn.note("error", name=error.get("name"), message=message)
        elif kind == "message.part.updated" and part.get("type") == "tool":
            self._note_tool(turn, part)
        elif kind == "permission.asked":
            self._reject(client, turn, props, "permission")
        elif kind == "question.asked":
            self._reject(client, turn, props, "question")

    def _note_tool(self, turn: _Turn, part: dict[str, Any]) -> None:
        state = part.get("state") or {}
        status, call_id = state.get("status"), part.get("callID") or part.get("id")
        if status == "pending" or turn.tool_status.get(call_id) == status:
            return
        turn.tool_status[call_id] = status
        fields = {"tool": part.get("tool"), "call_id": call_id, "status": status}
        if status == "error":
            fields["error"] = str(state.get("error"))[:500]
        elif state.get("title"):
            fields["title"] = str(state["title"])[:200]
        turn.note("tool", **fields)

    def _reject(self, client: OpenCodeClient, turn: _Turn, props: dict[str, Any], what: str) -> None:
        """Nobody can answer a prompt in a headless run: reject it so the turn goes on."""
        request_id = props.get("id", "")
        patterns = props.get("patterns") or []
        turn.note(f"{what}.asked", id=request_id, permission=props.get("permission"), patterns=patterns)
        try:
            if what == "permission":
                client.reply_permission(request_id, "reject", REJECT_MESSAGE)
            else:
                client.reject_question(request_id)
            turn.note(f"{what}.rejected", id=request_id)
        except OpenCodeError as exc:
            turn.note(f"{what}.reject_failed", id=request_id, error=str(exc))
        logger.info("opencode_%s_rejected opencode_session=%s id=%s", what, turn.session_id, request_id)

    def _reconnect(self, client: OpenCodeClient, turn: _Turn, closed: StreamClosed) -> None:
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

    def _idle_by_status(self, client: OpenCodeClient, turn: _Turn) -> None:
        if turn.session_id not in client.status():
            turn.idle = True
            turn.note("idle", via="status")

    def _abort_quietly(self, client: OpenCodeClient, turn: _Turn) -> None:
        try:
            client.abort(turn.session_id or "")
        except OpenCodeError as exc:
            turn.note("abort.failed", error=str(exc))

    # -- the result -----------------------------------------------------------------------
    def _collect(self, client: OpenCodeClient, turn: _Turn, abort_reason: str | None) -> DriverResult:
        assert turn.session_id is not None
        messages = self._settled_messages(client, turn.session_id)
        users = [m for m in messages if (m.get("info") or {}).get("role") == "user"]
        user_id = users[-1]["info"]["id"] if users else None
        replies = [
            m
            for m in messages
            if (m.get("info") or {}).get("role") == "assistant"
            and (user_id is None or m["info"].get("parentID") == user_id)
        ]
        result = DriverResult(succeeded=False, driver_session_id=turn.session_id, events=turn.events)
        result.tokens, result.cost = _usage(replies)
        result.summary = _reply_text(replies)
        if user_id is not None:
            try:
                result.diff = client.diff(turn.session_id, user_id)
            except OpenCodeError as exc:
                turn.note("diff.failed", error=str(exc))
        result.files_changed = [d["file"] for d in result.diff if d.get("file")]
        last = replies[-1]["info"] if replies else None
        error = (last or {}).get("error")
        if error:
            result.error = _error_text(error)
            result.retryable = bool((error.get("data") or {}).get("isRetryable"))
        elif last is None:
            result.error = "OpenCode produced no assistant reply"
        elif abort_reason and (not turn.idle or last.get("finish") != "stop"):
            stopped = "the turn was stopped before it finished"
            result.error = stopped if turn.idle else "the session did not stop after the abort"
        else:
            result.succeeded = True
        if abort_reason and not result.succeeded:
            result.error = f"aborted ({abort_reason}): {result.error}"
        return result

    def _settled_messages(self, client: OpenCodeClient, session_id: str) -> list[dict[str, Any]]:
        """Messages once the last reply is final: an error lands 10-50 ms after session.idle."""
        deadline = time.monotonic() + self.settle_timeout
        while True:
            messages = client.messages(session_id)
            replies = [m["info"] for m in messages if (m.get("info") or {}).get("role") == "assistant"]
            last = replies[-1] if replies else None
            if last is None or last.get("error") or (last.get("time") or {}).get("completed"):
                return messages
            if time.monotonic() >= deadline:
                return messages
            time.sleep(0.03)

    def _failure(self, turn: _Turn, error: str, retryable: bool = False) -> DriverResult:
        return DriverResult(
            succeeded=False,
            error=error,
            retryable=retryable,
            driver_session_id=turn.session_id,
            events=turn.events,
        )


def _error_text(error: dict[str, Any]) -> str:
    """`Name: message` for an OpenCode error object."""
    data = error.get("data") or {}
    message = data.get("message") or error.get("message") or ""
    name = error.get("name") or "Error"
    return f"{name}: {message}" if message else name


def _usage(replies: list[dict[str, Any]]) -> tuple[dict[str, int], float]:
    """Tokens and cost summed over the turn's assistant messages."""
    totals = {"input": 0, "output": 0, "reasoning": 0, "cache_read": 0, "cache_write": 0, "total": 0}
    cost = 0.0
    for message in replies:
        info = message.get("info") or {}
        tokens = info.get("tokens") or {}
        cache = tokens.get("cache") or {}
        counts = {
            "input": tokens.get("input") or 0,
            "output": tokens.get("output") or 0,
            "reasoning": tokens.get("reasoning") or 0,
            "cache_read": cache.get("read") or 0,
            "cache_write": cache.get("write") or 0,
        }
        counts["total"] = tokens.get("total") or counts["input"] + counts["output"] + counts["reasoning"]
        for key, value in counts.items():
            totals[key] += int(value)
        cost += float(info.get("cost") or 0.0)
    return totals, cost


def _reply_text(replies: list[dict[str, Any]]) -> str:
    """The text of the last assistant message that has any."""
    for message in reversed(replies):
        texts = [
            p.get("text", "")
            for p in message.get("parts") or []
            if p.get("type") == "text" and not p.get("synthetic")
        ]
        text = "".join(texts).strip()
        if text:
            return text
    return ""
