"""The contract between the execution engine and the drivers that do a task's work."""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Protocol

# What PostgreSQL cannot store in text or JSONB: NUL characters and lone UTF-16 surrogates.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: Any) -> Any:
    """`value` with every string made storable in PostgreSQL (NUL and lone surrogates become
    U+FFFD) and every non-finite float (NaN, infinities: not JSON) made None."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {storable(str(key)): storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [storable(item) for item in value]
    return value


@dataclass(frozen=True)
class AgentSpec:
    """What a driver needs to know about the agent it runs as."""

    id: str
    name: str
    driver: str
    endpoint: str | None = None
    model: str | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, agent: Any) -> AgentSpec:
        """The spec of a registered agent (a model object or a row with its columns)."""
        return cls(
            id=agent.id,
            name=agent.name,
            driver=agent.driver.value,
            endpoint=agent.endpoint,
            model=agent.model,
            config=dict(agent.config or {}),
        )


@dataclass(frozen=True)
class DriverJob:
    """One attempt at one task, handed to a driver."""

    session_id: str
    task_id: str
    task_key: str
    attempt: int
    title: str
    description: str
    agent: AgentSpec
    workdir: str
    timeout_seconds: float
    command: str | None = None
    prompt: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    capacity: int = 1
    queued_at: datetime | None = None
    base_ref: str = "HEAD"
    # A session that names a repository URL (and its base branch; None: the remote's HEAD)
    # instead of a local workdir: the task works in a worktree of this host's mirror of it.
    repository: str | None = None
    repository_branch: str | None = None
    # Set when the claim also started the attempt, holding an agent slot with this token.
    started_token: int | None = None
    # Whether a budget (the session's or the task's) covers the attempt, and the engine's
    # meter of it (app/engine/budget.py): a driver reports running usage with
    # `meter.usage(tokens, cost)`; a report that spends a budget sets the cancel event.
    budgeted: bool = False
    meter: Any = field(default=None, compare=False, repr=False)


@dataclass
class DriverResult:
    """What a driver reports back; the engine persists it as the task's result."""

    succeeded: bool
    summary: str = ""
    exit_code: int | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""
    error: str | None = None
    retryable: bool = False
    files_changed: list[str] = field(default_factory=list)
    diff: list[dict[str, Any]] = field(default_factory=list)
    tokens: dict[str, int] = field(default_factory=dict)
    cost: float = 0.0
    driver_session_id: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    def storable(self) -> DriverResult:
        """This result with every field storable in PostgreSQL (see `storable`)."""
        cleaned = {f.name: storable(getattr(self, f.name)) for f in fields(self)}
        cleaned["cost"] = cleaned["cost"] if isinstance(cleaned["cost"], float | int) else 0.0
        cleaned["tokens"] = {
            key: count for key, count in cleaned["tokens"].items() if isinstance(count, int)
        }
        return replace(self, **cleaned)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-safe dict for storage in PostgreSQL."""
        return {
            "succeeded": self.succeeded,
            "summary": self.summary,
            "exit_code": self.exit_code,
            "stdout_tail": self.stdout_tail,
            "stderr_tail": self.stderr_tail,
            "error": self.error,
            "files_changed": list(self.files_changed),
            "diff": list(self.diff),
            "tokens": dict(self.tokens),
            "cost": self.cost,
            "driver_session_id": self.driver_session_id,
        }


class Driver(Protocol):
    """Runs one job to the end, or until `cancel` is set; never raises for task errors."""

    name: str

    def run(self, job: DriverJob, cancel: threading.Event) -> DriverResult: ...
