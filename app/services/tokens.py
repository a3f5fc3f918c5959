"""API tokens: issue (the secret is shown once), verify by prefix and SHA-256 hash (with a
short-lived cache of verified tokens), revoke (announced on a PostgreSQL channel)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import object_session

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
# Every revocation is announced here (NOTIFY, delivered at commit) so web processes drop their
# cached verifications at once.
REVOKED_CHANNEL = "orchestrator_token_revoked"


@dataclass(frozen=True)
class Principal:
    """Who made a request: the token's id, name and the scopes it grants."""

    token_id: str
    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        """Whether this principal may do what `scope` guards."""
        return scope in self.scopes


class TokenCache:
    """Verified tokens by SHA-256 digest, each for `ttl` seconds, so most requests need no query.

    It answers only while `live`, which the web process's listener (`app.api.auth`) sets while it is
    subscribed to REVOKED_CHANNEL; the listener clears it at every revocation, and `ttl` bounds
    the damage of a lost notification. Only positive answers are kept, never the raw secret.
    """

    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.live = False
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._generation = 0
        self._lock = threading.Lock()
        _caches.add(self)

    @property
    def generation(self) -> int:
        """Changes at every clear; a verification that started before one must not be kept."""
        return self._generation

    def get(self, digest: str) -> Principal | None:
        """The cached principal of a token digest, if live and fresh."""
        entry = self._entries.get(digest)
        if entry is None or not self.live:
            return None
        if entry[0] < time.monotonic():
            self._entries.pop(digest, None)
            return None
        return entry[1]

    def put(self, digest: str, principal: Principal, generation: int) -> None:
        """Keep a verification made at `generation`, unless a clear happened since."""
        with self._lock:
            if generation != self._generation or not self.live:
                return
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[digest] = (time.monotonic() + self.ttl, principal)

    def clear(self) -> None:
        """Forget every verification (a token was revoked, or revocations may have been missed)."""
        with self._lock:
            self._generation += 1
            self._entries.clear()


_caches: weakref.WeakSet[TokenCache] = weakref.WeakSet()


def forget_cached_tokens() -> None:
    """Clear this process's token caches (after a revocation committed here)."""
    for cache in list(_caches):
        cache.clear()


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


def authenticate(db: DbSession, raw: str, cache: TokenCache | None = None) -> Principal | None:
    """The principal of a valid, unrevoked token, or None; notes when it was last used.

    With a cache, a token verified less than `cache.ttl` seconds ago needs no query.
    """
    if not raw.startswith(TOKEN_PREFIX) or len(raw) < PREFIX_LENGTH + 8:
        return None
    digest = hash_token(raw)
    if cache is not None:
        principal = cache.get(digest)
        if principal is not None:
            return principal
        generation = cache.generation
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
    principal = Principal(token.id, token.name, granted_scopes(token.scopes))
    if cache is not None:
        cache.put(digest, principal, generation)
    return principal


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
    """Revoke a token (idempotent); it stops working at once, cached or not.

    At commit, PostgreSQL notifies every web process (REVOKED_CHANNEL) and this process's own
    caches are cleared.
    """
    token = find_token(db, token_id_or_prefix)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        db.flush()
        db.execute(select(func.pg_notify(REVOKED_CHANNEL, token.id)))
        event.listen(object_session(token), "after_commit", _forget_after_commit, once=True)
        logger.info("api_token_revoked token_id=%s name=%s", token.id, token.name)
    return token


def _forget_after_commit(_session: DbSession) -> None:
    forget_cached_tokens()
