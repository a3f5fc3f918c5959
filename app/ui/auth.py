"""Signing in to the dashboard with an API token, and who each request is.

The cookie is Flask's signed session cookie (SECRET_KEY), HttpOnly, SameSite=Lax, Secure when
the request came over https, scoped to /ui. It holds the token's id and a prefix of its
SHA-256 digest, never the secret, plus the session's CSRF token: every request looks the token
up, so a revoked token's cookie stops working at once. Scopes are the API's: read sees, write
acts (`app.services.tokens.GRANTS`).
"""

from __future__ import annotations

import hmac
import logging
import secrets

from flask import Flask, abort, current_app, request, session
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import select

from app.api.auth import AUTH_DISABLED_PRINCIPAL
from app.extensions import db
from app.services import tokens
from app.services.tokens import Principal
from models import ApiToken

logger = logging.getLogger(__name__)

COOKIE_NAME = "orchestrator_ui"
DIGEST_CHARS = 32  # of the token's SHA-256 hex digest kept in the cookie
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
PRINCIPAL_KEY = "orchestrator.ui_principal"


class DashboardCookies(SecureCookieSessionInterface):
    """The session cookie, marked Secure whenever the request itself came over https."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"] or request.is_secure)


def configure_cookies(app: Flask) -> None:
    """Cookie settings of the dashboard's session (the API itself keeps no session)."""
    app.config.update(SESSION_COOKIE_NAME=COOKIE_NAME, SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_PATH="/ui")  # fmt: skip
    app.session_interface = DashboardCookies()


def csrf_token() -> str:
    """This browser session's CSRF token, made on first use."""
    if CSRF_FIELD not in session:
        session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return session[CSRF_FIELD]


def check_csrf() -> None:
    """403 unless a POST carries the session's CSRF token (form field or header)."""
    expected = session.get(CSRF_FIELD)
    sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    if not expected or not hmac.compare_digest(str(expected), str(sent)):
        logger.info("ui csrf refused path=%s", request.path)
        abort(403, description="The form's CSRF token is missing or wrong; reload the page.")


def sign_in(raw: str) -> Principal | None:
    """Check a token and, when valid, bind this browser session to it (a fresh session)."""
    raw = (raw or "").strip()
    with db.session.begin():
        principal = tokens.authenticate(db.session, raw)
        if principal is None:
            return None
        digest = db.session.scalar(
            select(ApiToken.token_hash).where(ApiToken.id == principal.token_id)
        )
    session.clear()
    session["token_id"] = principal.token_id
    session["token_digest"] = digest[:DIGEST_CHARS]
    session[CSRF_FIELD] = secrets.token_urlsafe(32)
    logger.info("ui sign-in token_id=%s", principal.token_id)
    return principal


def sign_out() -> None:
    """Forget the browser session (keeps nothing of the token)."""
    logger.info("ui sign-out token_id=%s", session.get("token_id"))
    session.clear()


def current_principal() -> Principal | None:
    """Who this request is: the cookie's token if it is still valid, else None."""
    if PRINCIPAL_KEY in request.environ:  # per request (an app context may outlive one)
        return request.environ[PRINCIPAL_KEY]
    principal = None
    if current_app.config.get("AUTH_DISABLED"):
        principal = AUTH_DISABLED_PRINCIPAL
    elif session.get("token_id"):
        with db.session.begin():
            token = db.session.get(ApiToken, session["token_id"])
            valid = (token is not None and token.revoked_at is None
                     and hmac.compare_digest(token.token_hash[:DIGEST_CHARS],
                                             str(session.get("token_digest", ""))))  # fmt: skip
            if valid:
                principal = Principal(token.id, token.name, tokens.granted_scopes(token.scopes))
        if principal is None:
            session.clear()
    request.environ[PRINCIPAL_KEY] = principal
    return principal


def can(scope: str) -> bool:
    """Whether this request's principal has `scope`."""
    principal = current_principal()
    return principal is not None and principal.allows(scope)


def require(scope: str) -> Principal:
    """The principal, or 401 (not signed in) / 403 (it lacks `scope`)."""
    principal = current_principal()
    if principal is None:
        abort(401, description="Sign in first.")
    if not principal.allows(scope):
        logger.info("ui forbidden token_id=%s scope=%s path=%s", principal.token_id, scope,
                    request.path)  # fmt: skip
        abort(403, description=f"This token lacks the '{scope}' scope.")
    return principal
