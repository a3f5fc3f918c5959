"""One error format for every failure: {code, status, message, errors}."""

from __future__ import annotations

import logging
from http import HTTPStatus

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from app.services.errors import DomainError
from models import InvalidTransition

logger = logging.getLogger(__name__)


def error_body(code: int, message: str, errors: dict | None = None, **extra):
    """A JSON error response in the API's format."""
    body = {"code": code, "status": HTTPStatus(code).phrase, "message": message}
    body["errors"] = errors or {}
    body.update(extra)
    return jsonify(body), code


def register_error_handlers(app: Flask) -> None:
    """Map domain errors and HTTP errors to JSON; never leak a traceback."""

    @app.errorhandler(DomainError)
    def _domain_error(error: DomainError):
        return error_body(error.status, error.message, error.errors)

    @app.errorhandler(InvalidTransition)
    def _invalid_transition(error: InvalidTransition):
        return error_body(409, str(error), current=error.current, allowed=error.allowed)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        data = getattr(error, "data", None) or {}
        messages = data.get("messages") or {}
        flattened = {}
        for location, fields in messages.items():
            flattened.update(fields if isinstance(fields, dict) else {location: fields})
        message = data.get("message") or error.description or HTTPStatus(error.code).phrase
        return error_body(error.code, message, flattened)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        logger.exception("unhandled error")
        return error_body(500, "Internal error; it was logged.")
