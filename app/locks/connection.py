"""Redis clients from a URL: `redis://` (and `rediss://`, `unix://`) as redis-py reads them,
or a Redis Sentinel list, `sentinel://[:password@]host:port[/db];sentinel://host:port;...`,
the form kombu reads for the Celery broker.

With Sentinel, the client asks the sentinels for the master of REDIS_SENTINEL_MASTER (default
`mymaster`) and follows a failover: the locks and the broker then survive the loss of the Redis
master. The password and database of the first entry are the master's (as kombu reads them);
REDIS_SENTINEL_PASSWORD, when set, is the sentinels' own (their `requirepass`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import redis
from redis.sentinel import Sentinel

SCHEME = "sentinel"
DEFAULT_MASTER = "mymaster"
DEFAULT_SENTINEL_PORT = 26379


class BadRedisUrl(ValueError):
    """A sentinel:// URL that names no usable sentinel."""


@dataclass(frozen=True)
class SentinelTarget:
    """What a sentinel:// URL names: the sentinels, and the master's credentials and db."""

    sentinels: tuple[tuple[str, int], ...]
    db: int = 0
    username: str | None = None
    password: str | None = None


def is_sentinel(url: str | None) -> bool:
    """Whether `url` is a Redis Sentinel list rather than one server's URL."""
    return bool(url) and url.split("://", 1)[0].lower() == SCHEME


def parse_sentinel_url(url: str) -> SentinelTarget:
    """The sentinels, database and master credentials of a sentinel:// URL (entries separated
    by `;`); BadRedisUrl when an entry is not sentinel://host[:port][/db]."""
    sentinels: list[tuple[str, int]] = []
    db, username, password = 0, None, None
    for entry in filter(None, (part.strip() for part in url.split(";"))):
        parts = urlsplit(entry)
        try:
            port = parts.port or DEFAULT_SENTINEL_PORT
        except ValueError as error:
            raise BadRedisUrl(f"bad port in a Redis Sentinel entry: {parts.hostname}") from error
        if parts.scheme.lower() != SCHEME or not parts.hostname:
            raise BadRedisUrl("each entry of a Redis Sentinel URL is sentinel://host[:port][/db]")
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise BadRedisUrl(f"the database of a Redis Sentinel entry is a number: {path}")
        if not sentinels:  # as kombu and Celery read it: the first entry's db and credentials
            db = int(path or 0)
            username = unquote(parts.username) if parts.username else None
            password = unquote(parts.password) if parts.password is not None else None
        sentinels.append((parts.hostname, port))
    if not sentinels:
        raise BadRedisUrl("a Redis Sentinel URL names at least one sentinel")
    return SentinelTarget(tuple(sentinels), db, username, password)


def _settings() -> tuple[str, str | None]:
    """(master name, sentinels' password) of the running app, else of the environment."""
    from flask import current_app, has_app_context

    source = current_app.config if has_app_context() else os.environ
    return (source.get("REDIS_SENTINEL_MASTER") or DEFAULT_MASTER,
            source.get("REDIS_SENTINEL_PASSWORD") or None)  # fmt: skip


def redis_from_url(url: str, *, master_name: str | None = None, **kwargs) -> redis.Redis:
    """A client of the Redis at `url`, or of the current master of a sentinel:// list (one
    that follows failovers); `kwargs` are the connection's (socket timeouts and the like)."""
    if not is_sentinel(url):
        return redis.Redis.from_url(url, **kwargs)
    target = parse_sentinel_url(url)
    default_master, sentinel_password = _settings()
    timeouts = {key: kwargs[key] for key in ("socket_timeout", "socket_connect_timeout")
                if key in kwargs}  # fmt: skip
    sentinel_kwargs = {**timeouts, **({"password": sentinel_password} if sentinel_password else {})}
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_kwargs)
    return sentinel.master_for(
        master_name or default_master, db=target.db, username=target.username,
        password=target.password, **kwargs,
    )  # fmt: skip
