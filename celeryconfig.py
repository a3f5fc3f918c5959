"""Celery settings (lowercase names); broker and backend URLs come from the app config."""

import os

from kombu import Queue

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
timezone = "UTC"
enable_utc = True

# At-least-once delivery: ack after the task ran, requeue when the worker process dies.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
task_track_started = True

# Agent tasks wait minutes on I/O; a lost worker is detected by PostgreSQL state and the
# reconciler, so the broker's own redelivery only needs to be a late safety net.
# A broker URL of Redis Sentinels (sentinel://h1:26379;sentinel://h2:26379) asks them for the
# master named REDIS_SENTINEL_MASTER; plain redis:// URLs ignore these two options.
_SENTINEL = {
    "master_name": os.environ.get("REDIS_SENTINEL_MASTER", "mymaster"),
    **(
        {"sentinel_kwargs": {"password": os.environ["REDIS_SENTINEL_PASSWORD"]}}
        if os.environ.get("REDIS_SENTINEL_PASSWORD")
        else {}
    ),
}
broker_transport_options = {
    "visibility_timeout": 6 * 3600,
    "priority_steps": list(range(10)),
    "sep": ":",
    "queue_order_strategy": "priority",
    **_SENTINEL,
}
result_backend_transport_options = {"retry_policy": {"timeout": 5.0}, **_SENTINEL}
result_expires = 7 * 24 * 3600
broker_connection_retry_on_startup = True

task_default_queue = "control"
task_queues = (Queue("control"), Queue("agents"))
task_routes = {
    "sessions.run_task": {"queue": "agents"},
    "sessions.launch": {"queue": "control"},
    "recovery.*": {"queue": "control"},
    "maintenance.*": {"queue": "control"},
}
# Task modules beyond those the app's Celery instance includes.
imports = ("tasks.maintenance", "tasks.approvals")
task_default_priority = 2

task_soft_time_limit = 24 * 3600
task_time_limit = 24 * 3600 + 60

# Many hosts (docs/deployment.md): workers start with --without-gossip --without-mingle (no
# all-to-all chatter at start and every second; PostgreSQL, not worker state, is the truth).
# A deploy stops a worker with a cold shutdown (SIGQUIT, or SIGTERM with REMAP_SIGTERM=SIGQUIT):
# running tasks get WORKER_SOFT_SHUTDOWN_SECONDS to finish (a task's default timeout, 600 s, and
# a margin), then the unfinished ones are cancelled and their messages requeued for the other
# workers; an attempt cut short is retried from PostgreSQL's state either way. An idle worker
# exits at once unless WORKER_SOFT_SHUTDOWN_ON_IDLE=1 (which waits the full time even then).
worker_soft_shutdown_timeout = float(os.environ.get("WORKER_SOFT_SHUTDOWN_SECONDS", "660"))
worker_enable_soft_shutdown_on_idle = os.environ.get("WORKER_SOFT_SHUTDOWN_ON_IDLE", "0") == "1"

# Flower and monitoring.
worker_send_task_events = True
task_send_sent_event = True


def _seconds(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


# Maintenance jobs; each only finds due ids and fans out guarded tasks.
beat_schedule: dict = {
    "session-timeout-watchdog": {
        "task": "recovery.watchdog",
        "schedule": float(os.environ.get("WATCHDOG_INTERVAL_SECONDS", "10")),
    },
    "reconcile-lost-work": {
        "task": "recovery.reconcile",
        "schedule": float(os.environ.get("RECONCILE_INTERVAL_SECONDS", "10")),
    },
    # Operations jobs (tasks/maintenance.py); BEAT_<JOB>_SECONDS changes how often each runs.
    "agent-health-checks": {
        "task": "maintenance.agent_health",
        "schedule": _seconds("BEAT_AGENT_HEALTH_SECONDS", 30),
        "kwargs": {
            "heartbeat_timeout_s": _seconds("AGENT_HEARTBEAT_TIMEOUT_SECONDS", 120),
            "failures_before_unhealthy": int(
                os.environ.get("AGENT_FAILURES_BEFORE_UNHEALTHY", "2")
            ),
        },
    },
    "retention": {
        "task": "maintenance.retention",
        "schedule": _seconds("BEAT_RETENTION_SECONDS", 3600),
        "kwargs": {
            "older_than_days": _seconds("RETENTION_DAYS", 30),
            "job_runs_days": _seconds("JOB_RUNS_RETENTION_DAYS", 14),
        },
    },
    "worktree-cleanup": {
        "task": "maintenance.worktree_cleanup",
        "schedule": _seconds("BEAT_WORKTREE_CLEANUP_SECONDS", 600),
        "kwargs": {
            "grace_s": _seconds("WORKTREE_GRACE_SECONDS", 3600),
            "retryable_grace_s": _seconds("WORKTREE_RETRYABLE_GRACE_SECONDS", 7 * 86400),
        },
    },
    "approval-expiry": {
        "task": "maintenance.expire_approvals",
        "schedule": _seconds("BEAT_APPROVAL_EXPIRY_SECONDS", 5),
    },
    "deadlock-detection": {
        "task": "maintenance.deadlocks",
        "schedule": _seconds("BEAT_DEADLOCKS_SECONDS", 30),
        "kwargs": {"namespace": os.environ.get("LOCK_NAMESPACE", "orch")},
    },
}
