"""Prometheus metrics: domain counters and histograms observed by web and workers, HTTP latency
by route, and gauges read from PostgreSQL at scrape time; multiprocess-safe when
PROMETHEUS_MULTIPROC_DIR names a directory shared by every process of one host."""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from collections.abc import Mapping

from flask import Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select
from sqlalchemy.orm import Session as DbSession

from app.extensions import db
from models import Agent, Approval, ApprovalKind, ApprovalStatus, BeatJobRun, Session, SessionTask
from models.enums import SESSION_FINISHED, AgentStatus, SessionStatus, TaskStatus

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_HOST = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:40] or "host"

if os.environ.get(MULTIPROC_ENV):
    # Containers sharing one directory may reuse pids: name each file by host and pid.
    values.ValueClass = values.MultiProcessValue(lambda: f"{_HOST}-{os.getpid()}")

WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

TASK_QUEUE_WAIT = Histogram(
    "orchestrator_task_queue_wait_seconds",
    "Time from a task being queued to it starting on an agent.", ["agent"], buckets=WAIT_BUCKETS,
)  # fmt: skip
TASK_DURATION = Histogram(
    "orchestrator_task_duration_seconds",
    "Run time of task attempts, by agent and outcome.", ["agent", "status"],
    buckets=DURATION_BUCKETS,
)  # fmt: skip
TOKENS = Counter("orchestrator_tokens_total", "Tokens used by agents.", ["agent", "kind"])
COST = Counter("orchestrator_cost_total", "Cost reported by agents (USD).", ["agent"])
FENCING_REJECTIONS = Counter(
    "orchestrator_fencing_rejections_total",
    "Writes refused because a newer epoch, attempt or lease owns the task.", ["reason"],
)  # fmt: skip
LEASE_AGE = Histogram(
    "orchestrator_lease_age_seconds",
    "Age of agent leases when renewed or released.", ["agent"], buckets=WAIT_BUCKETS,
)  # fmt: skip
BEAT_JOB_RUNS = Counter(
    "orchestrator_beat_job_runs_total", "Runs of beat jobs by outcome.", ["job", "outcome"]
)
BEAT_JOB_DURATION = Histogram(
    "orchestrator_beat_job_duration_seconds", "Run time of beat jobs.", ["job"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300),
)  # fmt: skip
HTTP_LATENCY = Histogram(
    "orchestrator_http_request_duration_seconds",
    "HTTP request latency by route template (not raw path).", ["method", "route", "status"],
    buckets=HTTP_BUCKETS,
)  # fmt: skip
CELERY_TASKS = Counter(
    "orchestrator_celery_tasks_total", "Celery task runs on workers by final state.",
    ["task", "state"],
)  # fmt: skip
CELERY_RUNTIME = Histogram(
    "orchestrator_celery_task_runtime_seconds", "Run time of Celery tasks on workers.", ["task"],
    buckets=DURATION_BUCKETS,
)  # fmt: skip


AGENT_SPEND = Counter(
    "orchestrator_agent_spend_total",
    "What agents spent as charged to budgets: tokens, cost_usd, agent_seconds.", ["agent", "kind"],
)  # fmt: skip


def _label(value: object) -> str:
    return str(value) if value not in (None, "") else "unknown"


def observe_task_started(agent_name: str, wait_seconds: float | None) -> None:
    """A task started on an agent `wait_seconds` after it was queued."""
    if wait_seconds is not None:
        TASK_QUEUE_WAIT.labels(_label(agent_name)).observe(max(0.0, float(wait_seconds)))


def observe_task_finished(
    agent_name: str,
    status: str,
    duration_s: float,
    tokens: Mapping[str, int] | int | None = None,
    cost: float | None = None,
) -> None:
    """A task attempt ended: its duration, tokens (total or by kind) and cost."""
    agent = _label(agent_name)
    TASK_DURATION.labels(agent, _label(getattr(status, "value", status))).observe(
        max(0.0, float(duration_s or 0.0))
    )
    counts = tokens if isinstance(tokens, Mapping) else {"total": tokens or 0}
    for kind, count in counts.items():
        if isinstance(count, int | float) and count > 0:
            TOKENS.labels(agent, _label(kind)).inc(count)
    if cost:
        COST.labels(agent).inc(max(0.0, float(cost)))


def observe_spend(
    session_id: str, agent_name: str, tokens: int, cost: float, seconds: float
) -> None:
    """Spending charged to a session's budget figures, counted by agent (sessions are many:
    their spend is a gauge read from PostgreSQL)."""
    agent = _label(agent_name)
    for kind, amount in (("tokens", tokens), ("cost_usd", cost), ("agent_seconds", seconds)):
        if amount and amount > 0:
            AGENT_SPEND.labels(agent, kind).inc(amount)


def observe_fencing_rejection(reason: str) -> None:
    """A stale or duplicated write was refused (e.g. `stale_epoch`, `lease_lost`)."""
    FENCING_REJECTIONS.labels(_label(reason)).inc()


def observe_lease_age(agent: str, seconds: float) -> None:
    """The age of an agent lease at a renewal or release."""
    LEASE_AGE.labels(_label(agent)).observe(max(0.0, float(seconds)))


def observe_beat_job(job: str, outcome: str, duration_s: float) -> None:
    """A beat job run ended with `outcome` (ok, failed, skipped)."""
    BEAT_JOB_RUNS.labels(job, outcome).inc()
    BEAT_JOB_DURATION.labels(job).observe(max(0.0, duration_s))


class DatabaseCollector:
    """Gauges computed from PostgreSQL when scraped: sessions, tasks and agents by status, and
    each beat job's last success; cached for `cache_seconds` so several scrapers cost one query."""

    _lock = threading.Lock()
    _cache: tuple[float, list] = (0.0, [])

    def __init__(self, cache_seconds: float = 5.0) -> None:
        self.cache_seconds = cache_seconds

    def collect(self):
        with self._lock:
            taken, families = DatabaseCollector._cache
            if time.monotonic() - taken >= self.cache_seconds or not families:
                families = self._read()
                DatabaseCollector._cache = (time.monotonic(), families)
        return iter(families)

    def _read(self) -> list:
        up = GaugeMetricFamily("orchestrator_database_up", "1 if the scrape could read PostgreSQL.")
        try:
            with DbSession(bind=db.engine) as session:
                families = [
                    _by_status(session, Session, SessionStatus, "orchestrator_sessions",
                               "Sessions by status."),
                    _by_status(session, SessionTask, TaskStatus, "orchestrator_tasks",
                               "Tasks by status."),
                    _by_status(session, Agent, AgentStatus, "orchestrator_agents",
                               "Agents by status."),
                    _last_success(session),
                    *_approvals_and_spend(session),
                ]  # fmt: skip
        except Exception as error:  # a scrape must answer even when PostgreSQL does not
            logger.warning("metrics database read failed error=%s", type(error).__name__)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *families]


def _by_status(session: DbSession, model, enum, name: str, documentation: str):
    counts = dict(session.execute(select(model.status, func.count()).group_by(model.status)).all())
    family = GaugeMetricFamily(name, documentation, labels=["status"])
    for status in enum:
        family.add_metric([status.value], counts.get(status, 0))
    return family


def _last_success(session: DbSession):
    family = GaugeMetricFamily(
        "orchestrator_beat_job_last_success_timestamp_seconds",
        "When each beat job last finished successfully (Unix time).", labels=["job"],
    )  # fmt: skip
    rows = session.execute(
        select(BeatJobRun.job, func.max(BeatJobRun.finished_at))
        .where(BeatJobRun.outcome == "ok")
        .group_by(BeatJobRun.job)
    )
    for job, finished_at in rows:
        family.add_metric([job], finished_at.timestamp())
    return family


def _approvals_and_spend(session: DbSession):
    """Pending approvals by kind, and what each unfinished session spent."""
    pending = GaugeMetricFamily(
        "orchestrator_approvals_pending",
        "Approvals waiting for a decision, by kind.",
        labels=["kind"],
    )
    counts = dict(session.execute(
        select(Approval.kind, func.count())
        .where(Approval.status == ApprovalStatus.PENDING).group_by(Approval.kind)
    ).all())  # fmt: skip
    for kind in ApprovalKind:
        pending.add_metric([kind.value], counts.get(kind, 0))
    spend = GaugeMetricFamily(
        "orchestrator_session_spend",
        "What unfinished sessions spent, by kind.",
        labels=["session", "kind"],
    )
    rows = session.execute(
        select(Session.id, Session.spent_tokens, Session.spent_cost_usd,
               Session.spent_agent_seconds)
        .where(Session.status.not_in(SESSION_FINISHED)).limit(1000)
    )  # fmt: skip
    for session_id, tokens, cost, seconds in rows:
        spend.add_metric([session_id, "tokens"], tokens)
        spend.add_metric([session_id, "cost_usd"], cost)
        spend.add_metric([session_id, "agent_seconds"], seconds)
    return pending, spend


class _Forward:
    """Expose another registry's metrics (this process's, when not in multiprocess mode)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self):
        return self.registry.collect()


def process_registry(multiproc_dir: str | None = None) -> CollectorRegistry:
    """Every process's metrics: merged from the multiprocess directory, else this process's."""
    registry = CollectorRegistry(auto_describe=False)
    path = multiproc_dir or os.environ.get(MULTIPROC_ENV)
    if path:
        MultiProcessCollector(registry, path=path)
    else:
        registry.register(_Forward(REGISTRY))
    return registry


def render_metrics(cache_seconds: float = 5.0, multiproc_dir: str | None = None) -> bytes:
    """The Prometheus text exposition of every process's metrics plus the database gauges."""
    registry = process_registry(multiproc_dir)
    registry.register(DatabaseCollector(cache_seconds))
    return generate_latest(registry)


def _metrics_view():
    cache = float(current_app.config.get("METRICS_DB_CACHE_SECONDS", 5.0))
    return Response(render_metrics(cache), mimetype=CONTENT_TYPE_LATEST)


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _observe_request(response):
    started = g.pop("metrics_started", None)
    if started is not None:
        route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
        HTTP_LATENCY.labels(request.method, route, str(response.status_code)).observe(
            time.perf_counter() - started
        )
    return response


def init_metrics(app: Flask) -> None:
    """Serve /metrics and time every request (register before auth, so 401s are timed too)."""
    app.config.setdefault(
        "METRICS_DB_CACHE_SECONDS", float(os.environ.get("METRICS_DB_CACHE_SECONDS", "5"))
    )
    app.before_request(_start_timer)
    app.after_request(_observe_request)
    app.add_url_rule("/metrics", "metrics", _metrics_view)
    _connect_worker_signals()


_task_started: dict[str, float] = {}


def _task_prerun(task_id=None, **_kwargs) -> None:
    _task_started[task_id] = time.monotonic()


def _task_postrun(task_id=None, task=None, state=None, **_kwargs) -> None:
    started = _task_started.pop(task_id, None)
    name = getattr(task, "name", "unknown")
    CELERY_TASKS.labels(name, (state or "unknown").lower()).inc()
    if started is not None:
        CELERY_RUNTIME.labels(name).observe(time.monotonic() - started)


def _serve_worker_metrics(**_kwargs) -> None:
    port = os.environ.get("WORKER_METRICS_PORT")
    if port:
        from prometheus_client import start_http_server

        start_http_server(int(port), registry=process_registry())
        logger.info("worker metrics served port=%s", port)


def _connect_worker_signals() -> None:
    from celery import signals

    signals.task_prerun.connect(_task_prerun, weak=False, dispatch_uid="orch-metrics-prerun")
    signals.task_postrun.connect(_task_postrun, weak=False, dispatch_uid="orch-metrics-postrun")
    signals.worker_ready.connect(_serve_worker_metrics, weak=False, dispatch_uid="orch-metrics")
