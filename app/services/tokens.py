"""API tokens: issue (the secret is shown once), verify by prefix and SHA-256 hash, revoke."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session as DbSession

from models import ApiToken
from models.base import utcnow

from .errors import NotFound, ValidationFailed

logger = logging.getLogger(__name__)

SCOPES = ("read", "write", "admin")
# A scope grants itself and every scope below it: admin > write > read.
GRANTS = {"read": {"read"}, "write": {"read", "write"}, "admin": {"read", "write", "admin"}}
TOKEN_PREFIX = "orch_"
PREFIX_LENGTH = 12
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class Principal:
    """Who made a request: the token's id, name and the scopes it grants."""

    token_id: str
    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        """Whether this principal may do what `scope` guards."""
        return scope in self.scopes


def granted_scopes(scopes: list[str]) -> frozenset[str]:
    """Every scope that `scopes` imply."""
    return frozenset().union(*(GRANTS.get(scope, set()) for scope in scopes))


def hash_token(raw: str) -> str:
    """The SHA-256 hex digest stored for a token."""
    return hashlib.sha256(raw.encode()).hexdigest()


def new_secret() -> str:
    """A fresh random token: `orch_` and 43 URL-safe characters (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_token(
    db: DbSession, name: str, scopes: list[str], raw: str | None = None
) -> tuple[ApiToken, str]:
    """Store a new token and return it with its secret, which is never stored or shown again."""
    name = (name or "").strip()
    if not 1 <= len(name) <= 100:
        raise ValidationFailed("A token needs a name of 1-100 characters.", {"name": ["1-100."]})
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValidationFailed(
            f"Scopes must be some of {', '.join(SCOPES)}.", {"scopes": [f"Unknown: {unknown}"]}
        )
    raw = raw or new_secret()
    token = ApiToken(
        name=name,
        prefix=raw[:PREFIX_LENGTH],
        token_hash=hash_token(raw),
        scopes=sorted(set(scopes), key=SCOPES.index),
    )
    db.add(token)
    db.flush()
    logger.info("api_token_created token_id=%s name=%s scopes=%s", token.id, name, token.scopes)
    return token, raw


def authenticate(db: DbSession, raw: str) -> Principal | None:
    """The principal of a valid, unrevoked token, or None; notes when it was last used."""
    if not raw.startswith(TOKEN_PREFIX) or len(raw) < PREFIX_LENGTH + 8:
        return None
    digest = hash_token(raw)
    candidates = db.scalars(
        select(ApiToken).where(
            ApiToken.prefix == raw[:PREFIX_LENGTH], ApiToken.revoked_at.is_(None)
        )
    )
    token = next((t for t in candidates if hmac.compare_digest(t.token_hash, digest)), None)
    if token is None:
        return None
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        db.execute(update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=now))
    return Principal(token.id, token.name, granted_scopes(token.scopes))


def list_tokens(db: DbSession, include_revoked: bool = False) -> list[ApiToken]:
    """Tokens, newest first (never their secrets)."""
    query = select(ApiToken).order_by(ApiToken.created_at.desc())
    if not include_revoked:
        query = query.where(ApiToken.revoked_at.is_(None))
    return list(db.scalars(query))


def find_token(db: DbSession, token_id_or_prefix: str) -> ApiToken:
    """The token with this id, or the only one with this prefix; NotFound otherwise."""
    token = db.get(ApiToken, token_id_or_prefix)
    if token is None and len(token_id_or_prefix) >= 8:
        matches = list(
            db.scalars(select(ApiToken).where(ApiToken.prefix.startswith(token_id_or_prefix)))
        )
        token = matches[0] if len(matches) == 1 else None
    if token is None:
        raise NotFound(f"Token {token_id_or_prefix} not found.")
    return token


def revoke_token(db: DbSession, token_id_or_prefix: str) -> ApiToken:
    """Revoke a token (idempotent); it stops working at once."""
    token = find_token(db, token_id_or_prefix)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        db.flush()
        logger.info("api_token_revoked token_id=%s name=%s", token.id, token.name)
    return token
