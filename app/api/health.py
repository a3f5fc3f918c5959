"""Liveness and readiness probes.

Readiness is public, so it names a failing dependency but never its error: the error text
(host names, ports, user names) goes to the log, redacted.
"""

from __future__ import annotations

import logging

import redis
from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from sqlalchemy import text

from app.extensions import db
from app.locks.connection import redis_from_url
from app.logging_config import redact_text

logger = logging.getLogger(__name__)
UNAVAILABLE = "unavailable"

blp = Blueprint("health", __name__, url_prefix="/health", description="Probes for orchestrators.")


class HealthSchema(Schema):
    status = fields.String()
    checks = fields.Dict()
    failing = fields.List(fields.String())


def _check_database() -> str | None:
    try:
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:  # any failure means "not ready"; the reason goes to the log
        return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"
    return None


def _check_redis() -> str | None:
    try:
        client = redis_from_url(
            current_app.config["REDIS_URL"], socket_timeout=1, socket_connect_timeout=1
        )
        client.ping()
        client.close()
    except redis.RedisError as error:
        return f"{type(error).__name__}: {str(error)[:200]}"
    return None


@blp.route("/live")
class Live(MethodView):
    @blp.response(200, HealthSchema)
    def get(self):
        """The process is up"""
        return {"status": "ok", "checks": {}, "failing": []}


@blp.route("/ready")
class Ready(MethodView):
    @blp.response(200, HealthSchema)
    @blp.alt_response(503, schema=HealthSchema, description="A dependency is down.")
    def get(self):
        """PostgreSQL and Redis answer"""
        problems = {"postgresql": _check_database(), "redis": _check_redis()}
        failing = sorted(name for name, problem in problems.items() if problem)
        for name in failing:
            logger.warning("not ready dependency=%s error=%s", name, redact_text(problems[name]))
        checks = {name: UNAVAILABLE if problem else "ok" for name, problem in problems.items()}
        body = {"status": "unavailable" if failing else "ok", "checks": checks, "failing": failing}
        return body, 503 if failing else 200
