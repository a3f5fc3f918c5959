"""Refuse text that PostgreSQL cannot store (NUL characters, lone UTF-16 surrogates) with a
422 naming where it was, before any view runs, instead of failing deep in the database."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask, request

from .errors import error_body

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _bad_text(value: str) -> bool:
    return _UNSTORABLE.search(value) is not None


def find_unstorable(value: Any, path: str) -> str | None:
    """The path of the first string (or key) that holds NUL or a lone surrogate, if any."""
    if isinstance(value, str):
        return path if _bad_text(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and _bad_text(key):
                return path or "body"
            found = find_unstorable(item, where)
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = find_unstorable(item, f"{path}.{index}" if path else str(index))
            if found:
                return found
    return None


def reject_unstorable_text():
    """The before_request hook: check path parameters, the query string and a JSON body."""
    sources = [
        ("path", dict(request.view_args or {})),
        ("query", {key: request.args.getlist(key) for key in request.args}),
    ]
    if request.is_json and request.content_length:
        body = request.get_json(silent=True)
        if body is not None:
            sources.append(("", body))
    for location, values in sources:
        where = find_unstorable(values, location)
        if where:
            message = "Text may not contain NUL characters or unpaired UTF-16 surrogates."
            return error_body(422, message, {where or "body": [message]})
    return None


def init_input_guard(app: Flask) -> None:
    """Install the guard before every request."""
    app.before_request(reject_unstorable_text)
