"""Which OpenCode servers the orchestrator may call: the AGENT_ENDPOINT_ALLOW policy.

AGENT_ENDPOINT_ALLOW is a comma-separated list of entries, each one of:

- a URL prefix (`https://oc.example.com/`, `http://10.0.0.5:4096/opencode`): the endpoint has
  the same scheme, host and port (the scheme's default when the prefix names none), and its
  path starts with the prefix's path at a `/` boundary;
- a host pattern with an optional port (`127.0.0.1`, `oc.internal:4096`, `*.agents.example`,
  `[::1]`): http or https to that host (`*.` matches any subdomain, not the domain itself), on
  any port unless one is named;
- `*`: any http(s) endpoint (turns the check off).

The default (`DEFAULT_AGENT_ENDPOINT_ALLOW`) is the loopback interface on any port, which
is where `make run` and the tests start their OpenCode servers. Hosts are compared as written
(no DNS lookup): `http://2130706433/` is not `127.0.0.1`. Endpoints with credentials in the URL
(`http://user:pass@host`) are refused everywhere: credentials belong in the agent's config.

The endpoint `local` is not a URL: such an agent is a host-free profile served by the OpenCode
server beside whichever worker runs its task, which the worker's WORKER_OPENCODE_URL names
(`resolve`). That URL is the operator's, set per worker host (in compose and Kubernetes the
server runs in the worker's network namespace: loopback), and is checked like any endpoint.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from flask import current_app, has_app_context

SETTING = "AGENT_ENDPOINT_ALLOW"
LOCAL = "local"  # the OpenCode server beside the worker that runs the task
WORKER_SETTING = "WORKER_OPENCODE_URL"
SCHEMES = ("http", "https")
# The loopback interface, any port.
DEFAULT_AGENT_ENDPOINT_ALLOW = "127.0.0.1,localhost,[::1]"
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class _Rule:
    scheme: str | None  # None: http or https
    host: str  # lowercased; may start with "*." (host patterns only)
    port: int | None  # None: any port
    path: str | None  # None: any path (host patterns); "" or "/x/": a prefix


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str


class InvalidAllowList(ValueError):
    """AGENT_ENDPOINT_ALLOW has an entry that is neither a URL prefix nor a host pattern."""


def _split(url: str):
    parts = urlsplit(url)
    return parts, parts.hostname, parts.port  # .port raises ValueError for a bad port


def _rule(entry: str) -> _Rule:
    if "://" in entry:
        try:
            parts, host, port = _split(entry)
        except ValueError as error:
            raise InvalidAllowList(f"{SETTING}: bad URL prefix {entry!r}") from error
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES or not host or parts.username or parts.password:
            raise InvalidAllowList(f"{SETTING}: bad URL prefix {entry!r}")
        path = parts.path if parts.path.endswith("/") else parts.path + "/"
        return _Rule(scheme, host.lower(), port or DEFAULT_PORTS[scheme], path)
    try:
        parts, host, port = _split(f"//{entry}")
    except ValueError as error:
        raise InvalidAllowList(f"{SETTING}: bad host pattern {entry!r}") from error
    if not host or parts.path or parts.query or parts.username or "*" in host.removeprefix("*."):
        raise InvalidAllowList(f"{SETTING}: bad host pattern {entry!r}")
    return _Rule(None, host.lower(), port, None)


def _matches(rule: _Rule, target: _Target) -> bool:
    if rule.scheme is not None and rule.scheme != target.scheme:
        return False
    if rule.port is not None and rule.port != target.port:
        return False
    if rule.host.startswith("*."):
        if not fnmatch.fnmatchcase(target.host, rule.host) or target.host == rule.host[2:]:
            return False
    elif rule.host != target.host:
        return False
    return rule.path is None or (target.path.rstrip("/") + "/").startswith(rule.path)


class EndpointPolicy:
    """A parsed AGENT_ENDPOINT_ALLOW: `problem(url)` says why an endpoint is refused."""

    def __init__(self, text: str) -> None:
        entries = [entry.strip() for entry in (text or "").split(",") if entry.strip()]
        self.text = ", ".join(entries)
        self.any = "*" in entries
        self.rules = tuple(_rule(entry) for entry in entries if entry != "*")

    def problem(self, url: str | None) -> str | None:
        """Why the orchestrator must not call `url`, or None when it may."""
        if not url or url == LOCAL:
            return None
        try:
            parts, host, port = _split(url)
        except ValueError:
            return "The endpoint is not a valid URL."
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES or not host:
            return "The endpoint must be an http:// or https:// URL with a host."
        if parts.username is not None or parts.password is not None:
            return "Put credentials in the agent's config (username, password), not in the URL."
        if self.any:
            return None
        target = _Target(scheme, host.lower(), port or DEFAULT_PORTS[scheme], parts.path or "/")
        if any(_matches(rule, target) for rule in self.rules):
            return None
        allowed = self.text or "nothing"
        return f"The endpoint is not allowed by {SETTING} (allowed: {allowed})."


@lru_cache(maxsize=16)
def policy_for(text: str) -> EndpointPolicy:
    """The parsed policy of an AGENT_ENDPOINT_ALLOW value (cached)."""
    return EndpointPolicy(text)


def configured_policy() -> EndpointPolicy:
    """The policy of the running app (of the environment outside an app context)."""
    if has_app_context():
        text = current_app.config.get(SETTING) or DEFAULT_AGENT_ENDPOINT_ALLOW
    else:
        text = os.environ.get(SETTING) or DEFAULT_AGENT_ENDPOINT_ALLOW
    return policy_for(text)


def refusal(url: str | None) -> str | None:
    """Why the configured policy refuses `url`, or None when it may be called."""
    return configured_policy().problem(url)


def worker_server() -> str | None:
    """The OpenCode server beside this worker (WORKER_OPENCODE_URL), or None."""
    if has_app_context():
        return current_app.config.get(WORKER_SETTING) or None
    return os.environ.get(WORKER_SETTING) or None


def resolve(endpoint: str | None) -> str | None:
    """The server to call for an agent's endpoint: `local` is this worker's server (None when
    the worker has none); any other endpoint is itself."""
    return worker_server() if endpoint == LOCAL else endpoint


def same_endpoint(first: str | None, second: str | None) -> bool:
    """Whether two endpoints name the same server and path (scheme and host case, default
    port and a trailing slash aside)."""
    if not first or not second:
        return first == second
    try:
        (a, host_a, port_a), (b, host_b, port_b) = _split(first), _split(second)
    except ValueError:
        return first == second
    scheme_a, scheme_b = a.scheme.lower(), b.scheme.lower()
    return (
        scheme_a == scheme_b
        and (host_a or "") == (host_b or "")
        and (port_a or DEFAULT_PORTS.get(scheme_a)) == (port_b or DEFAULT_PORTS.get(scheme_b))
        and a.path.rstrip("/") == b.path.rstrip("/")
        and (a.username, a.password, a.query) == (b.username, b.password, b.query)
    )
