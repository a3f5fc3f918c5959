"""Configuration: one class of defaults read from the environment; tests pass a mapping."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


class ConfigError(RuntimeError):
    """The configuration is missing something the process cannot run without."""


def _normalize_database_url(url: str) -> str:
    """SQLAlchemy 2.1 maps postgresql:// to psycopg 3; this project uses psycopg2."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


def load_config(overrides: dict | None = None) -> dict:
    """Settings from the environment, with `overrides` on top; fail loudly when one is missing."""
    env = os.environ
    config = {
        "ENVIRONMENT": env.get("ORCHESTRATOR_ENV", "development"),
        "DATABASE_URL": env.get("DATABASE_URL"),
        "REDIS_URL": env.get("REDIS_URL"),
        "CELERY_BROKER_URL": env.get("CELERY_BROKER_URL"),
        "CELERY_RESULT_BACKEND": env.get("CELERY_RESULT_BACKEND"),
        "SECRET_KEY": env.get("SECRET_KEY"),
        # Without SECRET_KEY (not in production): a key made once per install, kept here, so
        # that every web process signs the dashboard's cookies alike.
        "SECRET_KEY_FILE": env.get(
            "SECRET_KEY_FILE", str(Path.cwd() / ".standalone" / "secret-key")
        ),
        "WORKSPACE_ROOT": env.get("WORKSPACE_ROOT", str(Path.cwd() / ".standalone" / "work")),
        "DB_POOL_SIZE": int(env.get("DB_POOL_SIZE", "10")),
        # Request bodies over this many bytes get a 413 (8 MiB: a 10,000-task DAG is about 3).
        "MAX_CONTENT_LENGTH": int(env.get("MAX_CONTENT_LENGTH", str(8 * 1024 * 1024))),
        # JSON bodies nested deeper than this (objects and arrays) get a 422.
        "JSON_MAX_DEPTH": int(env.get("JSON_MAX_DEPTH", "32")),
        "API_TITLE": "Agent Orchestrator",
        "API_VERSION": "v1",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/api",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "/docs",
        # Swagger UI's assets are vendored into the dashboard's static files (app/ui/vendor.py).
        "OPENAPI_SWAGGER_UI_URL": "/ui/static/vendor/swagger-ui-dist/",
        "API_SPEC_OPTIONS": {
            "info": {"description": "Submit coding requests as DAGs of agent tasks."}
        },
        "CELERY_TASK_ALWAYS_EAGER": False,
        "TASK_LEASE_SECONDS": float(env.get("TASK_LEASE_SECONDS", "30")),
        "TASK_HEARTBEAT_SECONDS": float(env.get("TASK_HEARTBEAT_SECONDS", "10")),
        # Agent wait lists (app/engine/waitlist.py): a waiting task's priority improves by one
        # step per WAIT_AGING_SECONDS waited; a woken waiter not claimed within
        # WAIT_WOKEN_GRACE_SECONDS may be woken again.
        "WAIT_AGING_SECONDS": float(env.get("WAIT_AGING_SECONDS", "60")),
        "WAIT_WOKEN_GRACE_SECONDS": float(env.get("WAIT_WOKEN_GRACE_SECONDS", "30")),
        "DISPATCH_GRACE_SECONDS": float(env.get("DISPATCH_GRACE_SECONDS", "30")),
        # Event streams (SSE): how many one token may hold open, and how long one stays open.
        "STREAMS_PER_TOKEN": int(env.get("STREAMS_PER_TOKEN", "20")),
        "STREAM_MAX_SECONDS": float(env.get("STREAM_MAX_SECONDS", "300")),
        # OpenCode servers agents may name; unset: app/drivers/endpoints.py's default (loopback).
        "AGENT_ENDPOINT_ALLOW": env.get("AGENT_ENDPOINT_ALLOW"),
        # The OpenCode server beside this worker, which serves agents whose endpoint is
        # `local` (docs/deployment.md); unset: such tasks fail here and are retried elsewhere.
        "WORKER_OPENCODE_URL": env.get("WORKER_OPENCODE_URL"),
        # With a sentinel:// REDIS_URL (app/locks/connection.py): the master's name, and the
        # sentinels' own password if they have one. CELERY_BROKER_URL reads the same two.
        "REDIS_SENTINEL_MASTER": env.get("REDIS_SENTINEL_MASTER", "mymaster"),
        "REDIS_SENTINEL_PASSWORD": env.get("REDIS_SENTINEL_PASSWORD"),
    }
    config.update(overrides or {})
    missing = [name for name in ("DATABASE_URL", "REDIS_URL") if not config[name]]
    if missing:
        raise ConfigError(
            f"{' and '.join(missing)} must be set. For a laptop, `make run` (or "
            "`orchestrator standalone`) starts embedded PostgreSQL and Redis and sets them."
        )
    config["DATABASE_URL"] = _normalize_database_url(config["DATABASE_URL"])
    if config["AGENT_ENDPOINT_ALLOW"]:
        _check_endpoint_allow(config["AGENT_ENDPOINT_ALLOW"])
    config["CELERY_BROKER_URL"] = config["CELERY_BROKER_URL"] or config["REDIS_URL"]
    config["CELERY_RESULT_BACKEND"] = config["CELERY_RESULT_BACKEND"] or config["REDIS_URL"]
    if not config["SECRET_KEY"]:
        if config["ENVIRONMENT"] == "production":
            raise ConfigError("SECRET_KEY must be set when ORCHESTRATOR_ENV=production.")
        try:
            config["SECRET_KEY"] = install_secret(Path(config["SECRET_KEY_FILE"]))
        except OSError:  # nowhere to keep it: one per process (dashboard cookies then need
            config["SECRET_KEY"] = secrets.token_hex(32)  # a single web process)
    return config


def install_secret(path: Path) -> str:
    """The secret kept in `path` (mode 0600), made on first use; processes racing to make it
    all end up with the one that was linked into place first."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(secrets.token_hex(32))
    try:
        os.link(draft, path)  # atomic: fails if another process got there first
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return path.read_text().strip()


def _check_endpoint_allow(text: str) -> None:
    """Fail at start on an AGENT_ENDPOINT_ALLOW entry that is neither a URL nor a host."""
    from app.drivers.endpoints import InvalidAllowList, policy_for

    try:
        policy_for(text)
    except InvalidAllowList as error:
        raise ConfigError(str(error)) from error
