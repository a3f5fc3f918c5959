"""Bearer-token authentication: one before_request hook, an allow-list, scopes by method and path.

GET/HEAD/OPTIONS need `read`, other methods `write`, and the token and maintenance endpoints
`admin` (admin implies write implies read). `/health/*` and the OpenAPI documents are public;
`/metrics` is too when METRICS_PUBLIC=1. Unknown URLs fall through to their 404/405.

Verified tokens are cached for TOKEN_CACHE_SECONDS (default 5; 0 turns the cache off) while a
thread of the process LISTENs for revocations, so a revoked token is refused at once.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time

from apispec import BasePlugin
from flask import Flask, current_app, g, request
from flask_smorest import Api
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from app.config import ConfigError
from app.extensions import db
from app.services import tokens
from app.services.tokens import Principal, TokenCache

from .errors import error_body

logger = logging.getLogger(__name__)

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ADMIN_PREFIXES = ("/api/v1/tokens", "/api/v1/maintenance")
# The dashboard authenticates by its own signed cookie (app/ui/auth.py), not a bearer header.
UI_PREFIX = "/ui/"
SCHEME = "bearerAuth"
AUTH_DISABLED_PRINCIPAL = Principal(
    "auth-disabled", "auth-disabled", tokens.granted_scopes(["admin"])
)


def env_flag(config: dict, name: str) -> bool:
    """A boolean setting from the app config, else the environment (1/true/yes/on)."""
    value = config.get(name, os.environ.get(name, ""))
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def public_rules(config: dict) -> tuple[str, ...]:
    """URL rules (prefixes) anyone may call."""
    prefix = config.get("OPENAPI_URL_PREFIX", "/api").rstrip("/")
    public = ("/health/", f"{prefix}/{config.get('OPENAPI_JSON_PATH', 'openapi.json')}",
              f"{prefix}{config.get('OPENAPI_SWAGGER_UI_PATH', '/docs')}")  # fmt: skip
    return (*public, "/metrics") if env_flag(config, "METRICS_PUBLIC") else public


def is_public(rule: str, config: dict) -> bool:
    """Whether a URL rule needs no token."""
    return any(rule == p or (p.endswith("/") and rule.startswith(p)) or rule.startswith(p + "/")
               for p in public_rules(config))  # fmt: skip


def required_scope(rule: str, method: str) -> str:
    """The scope a request needs: admin for tokens and maintenance, else read or write."""
    if rule.startswith(ADMIN_PREFIXES):
        return "admin"
    return "read" if method.upper() in READ_METHODS else "write"


def _deny(status: int, message: str):
    body, code = error_body(status, message)
    if status == 401:
        body.headers["WWW-Authenticate"] = 'Bearer realm="orchestrator"'
    return body, code


_listener_lock = threading.Lock()


class RevocationListener:
    """A daemon thread that keeps a TokenCache live while it LISTENs for token revocations.

    Each notification clears the cache. While the thread is not subscribed (starting, or its
    connection lost) the cache is not live, so every request is checked in the database. An idle
    connection is checked every `check_seconds`; the cache's TTL bounds a silent loss.
    """

    APPLICATION_NAME = "orchestrator-token-revocations"

    def __init__(self, engine: Engine, cache: TokenCache, check_seconds: float = 5.0) -> None:
        self.engine = engine
        self.cache = cache
        self.check_seconds = check_seconds
        self.retry_seconds = (0.1, 5.0)
        self._pid: int | None = None

    def ensure_running(self) -> None:
        """Start the thread in this process (once; again after a fork)."""
        if self._pid == os.getpid():
            return
        with _listener_lock:
            if self._pid == os.getpid():
                return
            self.cache.live = False
            self.cache.clear()
            self._pid = os.getpid()
            threading.Thread(target=self._run, name="token-revocations", daemon=True).start()

    def _connect(self):
        cargs, cparams = self.engine.dialect.create_connect_args(self.engine.url)
        cparams = {**cparams, "application_name": self.APPLICATION_NAME}
        connection = self.engine.dialect.loaded_dbapi.connect(*cargs, **cparams)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"LISTEN {tokens.REVOKED_CHANNEL}")
        return connection

    def _run(self) -> None:
        delay = self.retry_seconds[0]
        while True:
            connection = None
            try:
                connection = self._connect()
                self.cache.clear()
                self.cache.live = True
                delay = self.retry_seconds[0]
                logger.info("revocation listener live cache_ttl=%ss", self.cache.ttl)
                self._listen(connection)
            except Exception as error:  # any failure: stop trusting the cache, reconnect
                logger.warning("revocation listener down error=%s retry_in=%.1fs",
                               type(error).__name__, delay)  # fmt: skip
            finally:
                self.cache.live = False
                self.cache.clear()
                if connection is not None:
                    try:
                        connection.close()
                    except Exception:  # already broken
                        pass
            time.sleep(delay)
            delay = min(delay * 2, self.retry_seconds[1])

    def _listen(self, connection) -> None:
        while True:
            readable, _, _ = select.select([connection], [], [], self.check_seconds)
            if not readable:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1")
            connection.poll()
            if connection.notifies:
                connection.notifies.clear()
                self.cache.clear()


def token_cache_seconds(config: dict) -> float:
    """TOKEN_CACHE_SECONDS from the app config, else the environment (default 5)."""
    return float(config.get("TOKEN_CACHE_SECONDS", os.environ.get("TOKEN_CACHE_SECONDS", "5")))


def _bearer_token() -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def authenticate_request():
    """The before_request hook: let public routes through, else demand a token with the scope."""
    rule = request.url_rule
    if rule is None or is_public(rule.rule, current_app.config):
        return None
    if rule.rule.startswith(UI_PREFIX):
        return None
    if current_app.config["AUTH_DISABLED"]:
        g.principal = AUTH_DISABLED_PRINCIPAL
        return None
    raw = _bearer_token()
    if raw is None:
        return _deny(401, "Authentication required: send 'Authorization: Bearer <token>'.")
    listener = current_app.extensions.get("token_revocations")
    cache = None
    if listener is not None:
        listener.ensure_running()
        cache = listener.cache
    try:
        principal = cache.get(tokens.hash_token(raw)) if cache is not None else None
        if principal is None:
            with db.session.begin():
                principal = tokens.authenticate(db.session, raw, cache)
    except OperationalError:
        logger.warning("auth database unavailable path=%s", request.path)
        return error_body(503, "The database is unavailable; try again.")
    if principal is None:
        return _deny(401, "The token is invalid or revoked.")
    scope = required_scope(rule.rule, request.method)
    if not principal.allows(scope):
        logger.info("auth forbidden token_id=%s scope=%s path=%s", principal.token_id, scope,
                    request.path)  # fmt: skip
        return _deny(403, f"This token lacks the '{scope}' scope.")
    g.principal = principal
    return None


class SecuritySchemePlugin(BasePlugin):
    """Document the bearer scheme on every protected operation, with the scope it needs."""

    def __init__(self, config: dict) -> None:
        self.config = config

    def operation_helper(self, path=None, operations=None, **kwargs) -> None:
        for method, operation in (operations or {}).items():
            if is_public(path, self.config):
                operation["security"] = []
                continue
            operation["security"] = [{SCHEME: []}]
            operation["x-required-scope"] = required_scope(path, method)
            responses = operation.setdefault("responses", {})
            responses.setdefault(401, "DEFAULT_ERROR")
            responses.setdefault(403, "DEFAULT_ERROR")


def api_spec_kwargs(config: dict) -> dict:
    """Arguments for `Api(spec_kwargs=...)` that add the security plugin."""
    return {"extra_plugins": [SecuritySchemePlugin(config)]}


def init_auth(app: Flask, api: Api) -> None:
    """Register the bearer scheme in the OpenAPI document and the hook on every request."""
    app.config["AUTH_DISABLED"] = env_flag(app.config, "AUTH_DISABLED")
    if app.config["AUTH_DISABLED"] and app.config.get("ENVIRONMENT") == "production":
        raise ConfigError("AUTH_DISABLED cannot be set when ORCHESTRATOR_ENV=production.")
    api.spec.components.security_scheme(
        SCHEME,
        {"type": "http", "scheme": "bearer", "description": "An API token: `orchestrator "
         "tokens create NAME --scope read|write|admin`. Operations list `x-required-scope`."},
    )  # fmt: skip
    app.before_request(authenticate_request)
    ttl = token_cache_seconds(app.config)
    if ttl > 0 and not app.config["AUTH_DISABLED"]:
        app.extensions["token_revocations"] = RevocationListener(db.engine, TokenCache(ttl))
    if app.config["AUTH_DISABLED"]:
        logger.warning(
            "AUTH_DISABLED=1: EVERY ENDPOINT IS OPEN TO ANYONE WHO CAN REACH THIS PORT. "
            "Use it for local experiments only, never in a deployment."
        )
