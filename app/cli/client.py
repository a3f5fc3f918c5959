"""How the `orchestrator` command reaches the API and the database, its errors and its exit
codes. A leaf: it imports no other module of the CLI or the stack.

Exit codes: 0 ok, 1 the session failed, 2 usage or validation error, 3 the API (or database)
is unreachable, 4 authentication or permission refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import requests
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session as DbSession

from app.config import _normalize_database_url
from app.services.errors import DomainError, NotFound

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_AUTH = 0, 1, 2, 3, 4
SUCCEEDED = ("completed", "partially_completed")


class CliError(Exception):
    """A failure to report on stderr, with the exit code that says what kind it was."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class ApiClient:
    """Calls on the orchestrator API with the bearer token; errors become CliErrors."""

    def __init__(self, base_url: str, token: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = requests.Session()
        self.http.headers.update(self.headers)

    def call(self, method: str, path: str, **kwargs):
        """The decoded JSON answer of one request."""
        try:
            response = self.http.request(method, self.base_url + path, timeout=30, **kwargs)
        except requests.RequestException as error:
            raise unreachable(self.base_url, error) from error
        check(response)
        return response.json() if response.content else None


def unreachable(base_url: str, error: Exception) -> CliError:
    """The error for an API that did not answer."""
    return CliError(f"the API at {base_url} is unreachable: {error}", EXIT_UNAVAILABLE)


def check(response: requests.Response) -> None:
    """Raise the CliError that an error answer means."""
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = {"message": response.text[:300]}
    message = body.get("message") or response.reason
    errors = f" {json.dumps(body['errors'])}" if body.get("errors") else ""
    if response.status_code in (401, 403):
        hint = " Pass --token or set ORCH_TOKEN." if response.status_code == 401 else ""
        raise CliError(f"{message}{hint}", EXIT_AUTH)
    if response.status_code >= 500:
        raise CliError(f"the API failed ({response.status_code}): {message}", EXIT_UNAVAILABLE)
    raise CliError(f"rejected ({response.status_code}): {message}{errors}", EXIT_USAGE)


def in_database(database_url: str | None, step: Callable):
    """Run `step(db_session)` in one transaction on DATABASE_URL."""
    if not database_url:
        raise CliError("tokens commands talk to the database directly: set DATABASE_URL "
                       "(the same one the API uses)", EXIT_USAGE)  # fmt: skip
    engine = create_engine(_normalize_database_url(database_url))
    try:
        with DbSession(bind=engine, expire_on_commit=False) as session, session.begin():
            return step(session)
    except OperationalError as error:
        raise CliError(f"the database is unreachable: {error.orig}", EXIT_UNAVAILABLE) from error
    except NotFound as error:
        raise CliError(error.message, EXIT_USAGE) from error
    except DomainError as error:
        raise CliError(f"{error.message} {error.errors or ''}".strip(), EXIT_USAGE) from error
    finally:
        engine.dispose()
