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
        "OPENAPI_SWAGGER_UI_URL": "https://cdn.jsdelivr.net/npm/swagger-ui-dist/",
        "API_SPEC_OPTIONS": {
            "info": {"description": "Submit coding requests as DAGs of agent tasks."}
        },
        "CELERY_TASK_ALWAYS_EAGER": False,
        "TASK_LEASE_SECONDS": float(env.get("TASK_LEASE_SECONDS", "30")),
        "TASK_HEARTBEAT_SECONDS": float(env.get("TASK_HEARTBEAT_SECONDS", "10")),
        "AGENT_WAIT_SECONDS": float(env.get("AGENT_WAIT_SECONDS", "300")),
        "DISPATCH_GRACE_SECONDS": float(env.get("DISPATCH_GRACE_SECONDS", "30")),
        # Event streams (SSE): how many one token may hold open, and how long one stays open.
        "STREAMS_PER_TOKEN": int(env.get("STREAMS_PER_TOKEN", "20")),
        "STREAM_MAX_SECONDS": float(env.get("STREAM_MAX_SECONDS", "300")),
        # OpenCode servers agents may name; unset: app/drivers/endpoints.py's default (loopback).
        "AGENT_ENDPOINT_ALLOW": env.get("AGENT_ENDPOINT_ALLOW"),
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
        config["SECRET_KEY"] = secrets.token_hex(32)
    return config


def _check_endpoint_allow(text: str) -> None:
    """Fail at start on an AGENT_ENDPOINT_ALLOW entry that is neither a URL nor a host."""
    from app.drivers.endpoints import InvalidAllowList, policy_for

    try:
        policy_for(text)
    except InvalidAllowList as error:
        raise ConfigError(str(error)) from error
