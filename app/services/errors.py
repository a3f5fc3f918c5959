"""Domain errors that the API maps to HTTP responses."""

from __future__ import annotations

from models import InvalidTransition


class DomainError(Exception):
    """Base of the errors a service raises for a caller's mistake."""

    status = 400

    def __init__(self, message: str, errors: dict | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or {}


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    status = 409


class ValidationFailed(DomainError):
    status = 422


class TooManyRequests(DomainError):
    status = 429


__all__ = [
    "Conflict", "DomainError", "InvalidTransition", "NotFound", "TooManyRequests",
    "ValidationFailed",
]  # fmt: skip
