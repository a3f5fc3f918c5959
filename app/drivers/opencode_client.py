"""HTTP client for `opencode serve` (v1 API): timeouts, retries, a circuit breaker per server.

It only calls servers AGENT_ENDPOINT_ALLOW allows (`app/drivers/endpoints.py`) and never follows
a redirect (an answer 3xx is an error), so its credentials go nowhere else.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential
from urllib3.exceptions import ConnectTimeoutError

import app.drivers.endpoints as endpoints
from app.drivers.opencode_events import EventStream

logger = logging.getLogger(__name__)


class OpenCodeError(Exception):
    """The server answered, but not with what was asked for (4xx, a malformed body)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class OpenCodeUnavailable(OpenCodeError):
    """The server could not be reached, timed out, or failed with a 5xx: worth retrying later."""

    def __init__(self, message: str, status: int | None = None, sent: bool = True) -> None:
        super().__init__(message, status)
        self.sent = sent


class OpenCodeAuthError(OpenCodeError):
    """The server refused our credentials (401/403)."""


class OpenCodeRedirect(OpenCodeError):
    """The server answered a redirect (3xx), which the client never follows."""


class EndpointRefused(OpenCodeError):
    """AGENT_ENDPOINT_ALLOW does not allow calling this server."""


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed for each kind of call; the event read must outlast the 10 s heartbeat."""

    connect: float = 3.0
    read: float = 30.0
    health: float = 5.0
    event_read: float = 35.0


class OpenCodeClient:
    """Calls on one server for one directory; connection errors and 5xx are retried with backoff."""

    def __init__(
        self,
        base_url: str,
        directory: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        timeouts: Timeouts | None = None,
        retry_attempts: int = 3,
        retry_max_wait: float = 2.0,
    ) -> None:
        refused = endpoints.refusal(base_url)
        if refused:
            raise EndpointRefused(refused)
        self.base_url = base_url.rstrip("/")
        self.directory = directory
        self.timeouts = timeouts or Timeouts()
        self.retry_attempts = max(1, retry_attempts)
        self.retry_max_wait = retry_max_wait
        self._auth = (username or "opencode", password) if password else None
        self._http = requests.Session()
        # Reach the server directly: no proxy or .netrc lookups from the environment (a localhost
        # server behind an HTTP_PROXY without NO_PROXY would break), and 0.5 ms less per call.
        self._http.trust_env = False

    def close(self) -> None:
        """Release pooled connections."""
        self._http.close()

    # -- calls ----------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """GET /global/health."""
        return self._call("GET", "/global/health", read_timeout=self.timeouts.health, scoped=False)

    def health_problem(self) -> str | None:
        """Why the server is not healthy, as a fixed short text that never quotes the server's
        answer (it may be anything), or None when it reports itself healthy."""
        try:
            status = self.health()
        except OpenCodeAuthError as error:
            return f"server refused the credentials (HTTP {error.status})"
        except OpenCodeRedirect as error:
            return f"server answered a redirect (HTTP {error.status}), which is not followed"
        except OpenCodeUnavailable as error:
            if error.status is not None:
                return f"server reports unhealthy (HTTP {error.status})"
            return f"server unreachable ({_failure_kind(error)})"
        except OpenCodeError as error:
            if error.status is not None and error.status >= 400:
                return f"server reports unhealthy (HTTP {error.status})"
            return f"server answered no health report (HTTP {error.status})"
        if not isinstance(status, dict) or not status.get("healthy"):
            return "server reports unhealthy (HTTP 200)"
        return None

    def create_session(
        self, title: str, permission: list[dict[str, str]] | None = None
    ) -> dict[str, Any]:
        """POST /session in our directory; returns the Session."""
        body: dict[str, Any] = {"title": title}
        if permission:
            body["permission"] = permission
        return self._call("POST", "/session", json=body, idempotent=False)

    def prompt_async(self, session_id: str, text: str, model: str | None = None) -> None:
        """POST /session/{id}/prompt_async; the turn runs in the background."""
        body: dict[str, Any] = {"parts": [{"type": "text", "text": text}]}
        if model:
            provider_id, _, model_id = model.partition("/")
            body["model"] = {"providerID": provider_id, "modelID": model_id}
        self._call("POST", f"/session/{session_id}/prompt_async", json=body, idempotent=False)

    def abort(self, session_id: str) -> bool:
        """POST /session/{id}/abort (safe to repeat)."""
        return bool(self._call("POST", f"/session/{session_id}/abort"))

    def messages(self, session_id: str) -> list[dict[str, Any]]:
        """GET /session/{id}/message: every message with its parts."""
        return self._call("GET", f"/session/{session_id}/message") or []

    def diff(self, session_id: str, message_id: str) -> list[dict[str, Any]]:
        """GET /session/{id}/diff for the turn started by user message `message_id`."""
        params = {"messageID": message_id}
        return self._call("GET", f"/session/{session_id}/diff", params=params) or []

    def status(self) -> dict[str, Any]:
        """GET /session/status: busy or retrying sessions (idle ones are absent)."""
        return self._call("GET", "/session/status") or {}

    def reply_permission(self, permission_id: str, reply: str, message: str | None = None) -> None:
        """POST /permission/{id}/reply with once, always or reject."""
        body = {"reply": reply, **({"message": message} if message else {})}
        self._call("POST", f"/permission/{permission_id}/reply", json=body)

    def reject_question(self, question_id: str) -> None:
        """POST /question/{id}/reject."""
        self._call("POST", f"/question/{question_id}/reject")

    def events(self) -> EventStream:
        """A not yet started follower of GET /event for our directory."""
        params = {"directory": self.directory} if self.directory else {}
        return EventStream(
            self.base_url,
            params,
            auth=self._auth,
            connect_timeout=self.timeouts.connect,
            read_timeout=self.timeouts.event_read,
        )

    # -- plumbing -------------------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        read_timeout: float | None = None,
        idempotent: bool = True,
        scoped: bool = True,
    ) -> Any:
        query = dict(params or {})
        if scoped and self.directory:
            query["directory"] = self.directory
        timeout = (self.timeouts.connect, read_timeout or self.timeouts.read)

        def retryable(exc: BaseException) -> bool:
            return isinstance(exc, OpenCodeUnavailable) and (idempotent or not exc.sent)

        retrying = Retrying(
            stop=stop_after_attempt(self.retry_attempts),
            wait=wait_random_exponential(multiplier=0.2, max=self.retry_max_wait),
            retry=retry_if_exception(retryable),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                return self._once(method, path, json, query, timeout)
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(
        self, method: str, path: str, json: Any, query: dict[str, str], timeout: tuple[float, float]
    ) -> Any:
        url = self.base_url + path
        try:
            response = self._http.request(
                method, url, json=json, params=query, timeout=timeout, auth=self._auth,
                allow_redirects=False,
            )
        except requests.ConnectTimeout as exc:
            raise OpenCodeUnavailable(f"{method} {path}: connect timeout", sent=False) from exc
        except requests.ConnectionError as exc:
            reason = getattr(exc.args[0], "reason", None) if exc.args else None
            sent = not isinstance(reason, ConnectTimeoutError)
            raise OpenCodeUnavailable(
                f"{method} {path}: cannot connect: {reason or exc}", sent=sent
            ) from exc
        except requests.Timeout as exc:
            raise OpenCodeUnavailable(f"{method} {path}: read timeout after {timeout[1]}s") from exc
        except requests.RequestException as exc:
            raise OpenCodeUnavailable(f"{method} {path}: {exc}") from exc
        status = response.status_code
        if 300 <= status < 400:
            raise OpenCodeRedirect(f"{method} {path}: HTTP {status}: redirects are not followed",
                                   status)  # fmt: skip
        if status in (401, 403):
            raise OpenCodeAuthError(
                f"{method} {path}: HTTP {status} (check the agent's credentials)", status
            )
        if status >= 500:
            raise OpenCodeUnavailable(
                f"{method} {path}: HTTP {status}: {response.text[:300]}", status
            )
        if status >= 400:
            raise OpenCodeError(f"{method} {path}: HTTP {status}: {response.text[:300]}", status)
        if status == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise OpenCodeError(
                f"{method} {path}: not JSON: {response.text[:200]!r}", status
            ) from exc


def _failure_kind(error: OpenCodeUnavailable) -> str:
    """What kind of failure kept a request from being answered, in fixed words."""
    cause = error.__cause__
    if isinstance(cause, requests.ConnectTimeout):
        return "connect timeout"
    if isinstance(cause, requests.Timeout):
        return "read timeout"
    if isinstance(cause, requests.ConnectionError):
        return "cannot connect"
    return "request failed"


class CircuitBreaker:
    """Closed → open after `threshold` failures in a row → half-open after `cooldown` → closed."""

    def __init__(
        self, threshold: int = 5, cooldown: float = 30.0, clock: Any = time.monotonic
    ) -> None:
        self.threshold = max(1, threshold)
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_started: float | None = None

    @property
    def state(self) -> str:
        """closed, open or half_open."""
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.cooldown:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """May a call go through now? In half-open, one trial call at a time."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return True
            if state == "open":
                return False
            now = self._clock()
            if self._trial_started is not None and now - self._trial_started < self.cooldown:
                return False
            self._trial_started = now
            return True

    def retry_after(self) -> float:
        """Seconds until the breaker lets a trial call through (0 when closed)."""
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self.cooldown - (self._clock() - self._opened_at))

    def record_success(self) -> None:
        """The server answered: close the breaker."""
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_started = None

    def record_failure(self) -> None:
        """The server was unreachable or failed: count it, open at the threshold."""
        with self._lock:
            self._failures += 1
            self._trial_started = None
            if self._opened_at is not None or self._failures >= self.threshold:
                self._opened_at = self._clock()

    def release(self) -> None:
        """The call ended without telling anything about the server: free the trial slot."""
        with self._lock:
            self._trial_started = None


class BreakerRegistry:
    """One process-local CircuitBreaker per server base URL."""

    def __init__(self, threshold: int = 5, cooldown: float = 30.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, base_url: str) -> CircuitBreaker:
        """The breaker for `base_url`, created on first use."""
        key = base_url.rstrip("/").lower()
        with self._lock:
            breaker = self._breakers.get(key)
            if breaker is None:
                breaker = self._breakers[key] = CircuitBreaker(self.threshold, self.cooldown)
            return breaker


BREAKERS = BreakerRegistry()
