"""One OpenCode turn as the driver sees it: what its events told, and the DriverResult it makes."""

from __future__ import annotations

import time
from typing import Any

from app.drivers.base import DriverResult
from app.drivers.opencode_events import EventStream

MAX_EVENTS = 500


class Turn:
    """What the driver learned about one turn while following the event stream."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.session_id: str | None = None
        self.user_message_id: str | None = None
        self.stream: EventStream | None = None
        self.events: list[dict[str, Any]] = []
        self.tool_status: dict[str, str] = {}
        self.active = False  # an event for our session arrived after the prompt
        self.idle = False
        self.last_event = started
        self.reconnects = 0
        self.retrying: str | None = None  # the model error OpenCode is retrying, until progress
        # Usage of each finished model step (step-finish parts), for budgets: part id -> usage.
        self.steps: dict[str, tuple[dict[str, int], float]] = {}
        self.usage_changed = False

    def note(self, kind: str, **fields: Any) -> None:
        """Record a notable event with its time since the run started."""
        if len(self.events) < MAX_EVENTS:
            elapsed_ms = round((time.monotonic() - self.started) * 1000, 1)
            self.events.append({"type": kind, "t_ms": elapsed_ms, **fields})

    def apply(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """Update from one event; return the properties of a permission/question to reject."""
        kind = event.get("type")
        props = event.get("properties") or {}
        part = props.get("part") or {}
        info = props.get("info") or {}
        if (
            props.get("sessionID") or part.get("sessionID") or info.get("sessionID")
        ) != self.session_id:
            return None
        self.active = True
        self.last_event = time.monotonic()
        status = props.get("status") or {}
        if kind == "session.idle" or (kind == "session.status" and status.get("type") == "idle"):
            if not self.idle:
                self.idle = True
                self.note("idle")
        elif kind == "session.status" and status.get("type") == "retry":
            self.retrying = status.get("message") or "unknown error"
            self.note("retry", attempt=status.get("attempt"), message=status.get("message"))
        elif kind == "session.error":
            error = props.get("error") or {}
            message = (error.get("data") or {}).get("message") or error.get("message")
            self.note("error", name=error.get("name"), message=message)
        elif kind == "message.updated" and info.get("role") == "user":
            self.user_message_id = self.user_message_id or info.get("id")
        elif kind == "message.part.updated":
            self.retrying = None
            if part.get("type") == "tool":
                self._note_tool(part)
            elif part.get("type") == "step-finish":
                self._note_step(part)
        elif kind in ("permission.asked", "question.asked"):
            return props
        return None

    def _note_step(self, part: dict[str, Any]) -> None:
        tokens = part.get("tokens") or {}
        counts = {name: int(tokens.get(name) or 0) for name in ("input", "output", "reasoning")}
        counts["total"] = int(tokens.get("total") or sum(counts.values()))
        step = (counts, float(part.get("cost") or 0.0))
        if self.steps.get(part.get("id") or "") != step:
            self.steps[part.get("id") or ""] = step
            self.usage_changed = True

    def running_usage(self) -> tuple[dict[str, int], float]:
        """Tokens and cost of the turn's finished model steps so far (from the event stream)."""
        totals = {"input": 0, "output": 0, "reasoning": 0, "total": 0}
        cost = 0.0
        for counts, step_cost in self.steps.values():
            for name, value in counts.items():
                totals[name] += value
            cost += step_cost
        return totals, cost

    def _note_tool(self, part: dict[str, Any]) -> None:
        state = part.get("state") or {}
        status, call_id = state.get("status"), part.get("callID") or part.get("id")
        if status == "pending" or self.tool_status.get(call_id) == status:
            return
        self.tool_status[call_id] = status
        fields = {"tool": part.get("tool"), "call_id": call_id, "status": status}
        if status == "error":
            fields["error"] = str(state.get("error"))[:500]
        elif state.get("title"):
            fields["title"] = str(state["title"])[:200]
        self.note("tool", **fields)

    def failure(self, error: str, retryable: bool = False) -> DriverResult:
        """A failed result that still carries the session id and the events so far."""
        return DriverResult(
            succeeded=False,
            error=error,
            retryable=retryable,
            driver_session_id=self.session_id,
            events=self.events,
        )


def build_result(
    turn: Turn,
    messages: list[dict[str, Any]],
    diff: list[dict[str, Any]],
    abort_reason: str | None,
) -> DriverResult:
    """The DriverResult of a finished turn: its reply, error, usage, diff and events."""
    users = [m for m in messages if (m.get("info") or {}).get("role") == "user"]
    user_id = turn.user_message_id or (users[-1]["info"]["id"] if users else None)
    replies = [
        m
        for m in messages
        if (m.get("info") or {}).get("role") == "assistant"
        and (user_id is None or m["info"].get("parentID") == user_id)
    ]
    result = DriverResult(succeeded=False, driver_session_id=turn.session_id, events=turn.events)
    result.tokens, result.cost = usage(replies)
    result.summary = reply_text(replies)
    result.diff = diff
    result.files_changed = [d["file"] for d in diff if d.get("file")]
    last = replies[-1]["info"] if replies else None
    error = (last or {}).get("error")
    if error:
        result.error = error_text(error)
        result.retryable = bool((error.get("data") or {}).get("isRetryable"))
    elif last is None:
        result.error = "OpenCode produced no assistant reply"
    elif abort_reason and (not turn.idle or last.get("finish") != "stop"):
        stopped = "the turn was stopped before it finished"
        result.error = stopped if turn.idle else "the session did not stop after the abort"
    else:
        result.succeeded = True
    if abort_reason and not result.succeeded:
        retrying = f" while OpenCode retried the model ({turn.retrying})" if turn.retrying else ""
        result.error = f"aborted ({abort_reason}){retrying}: {result.error}"
        result.retryable = result.retryable or bool(turn.retrying)
    return result


def is_settled(messages: list[dict[str, Any]]) -> bool:
    """Is the last assistant message final (completed or failed)? An error lands after idle."""
    replies = [m["info"] for m in messages if (m.get("info") or {}).get("role") == "assistant"]
    last = replies[-1] if replies else None
    return (
        last is None or bool(last.get("error")) or bool((last.get("time") or {}).get("completed"))
    )


def patched_files(messages: list[dict[str, Any]]) -> set[str]:
    """Absolute paths of the files the turn's steps patched (from `patch` parts)."""
    return {
        path
        for message in messages
        for part in message.get("parts") or []
        if part.get("type") == "patch"
        for path in part.get("files") or []
    }


def diff_covers(diff: list[dict[str, Any]], patched: set[str]) -> bool:
    """Does the diff (relative paths) name every patched file (absolute paths)?"""
    names = [d.get("file") or "" for d in diff]
    return all(any(name and path.endswith("/" + name) for name in names) for path in patched)


def error_text(error: dict[str, Any]) -> str:
    """`Name: message` for an OpenCode error object."""
    data = error.get("data") or {}
    message = data.get("message") or error.get("message") or ""
    name = error.get("name") or "Error"
    return f"{name}: {message}" if message else name


def usage(replies: list[dict[str, Any]]) -> tuple[dict[str, int], float]:
    """Tokens and cost summed over the turn's assistant messages."""
    totals = {
        "input": 0,
        "output": 0,
        "reasoning": 0,
        "cache_read": 0,
        "cache_write": 0,
        "total": 0,
    }
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
        counts["total"] = (
            tokens.get("total") or counts["input"] + counts["output"] + counts["reasoning"]
        )
        for key, value in counts.items():
            totals[key] += int(value)
        cost += float(info.get("cost") or 0.0)
    return totals, cost


def reply_text(replies: list[dict[str, Any]]) -> str:
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
