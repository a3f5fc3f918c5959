"""Refuse input the API cannot take, before any view runs, with a 4xx that says what and where:
a body over MAX_CONTENT_LENGTH (413); JSON nested deeper than JSON_MAX_DEPTH, NaN or Infinity
(also a number too large for a float), text PostgreSQL cannot store (NUL characters, lone UTF-16
surrogates) in path parameters, the query string or a JSON body (422)."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from flask import Flask, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from .errors import error_body

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
UNSTORABLE = "Text may not contain NUL characters or unpaired UTF-16 surrogates."
NON_FINITE = "NaN, Infinity and -Infinity are not JSON numbers, nor is one too large for a float."
TOO_MANY_DIGITS = "A number in the body has too many digits."


def too_deep(limit: int) -> str:
    """The message for JSON nested past `limit`."""
    return f"JSON may be nested at most {limit} levels deep (objects and arrays)."


def _path(trail: tuple | None) -> str:
    """`a.b.0` from the linked (parent, key) trail the walk keeps (a body's root key is "")."""
    keys: list[str] = []
    while trail is not None:
        trail, key = trail
        keys.append(str(key))
    keys.reverse()
    return ".".join(keys[1:] if keys and keys[0] == "" else keys)


def find_problem(
    value: Any, root: str = "", max_depth: int | None = None
) -> tuple[str, str] | None:
    """(where, message) for the first value the API refuses, or None: a container nested deeper
    than `max_depth`, a float that is not finite, a string or key with unstorable text.

    Iterative, so that the nesting the check refuses cannot exhaust the interpreter's stack.
    Values are what `json.loads` makes (exact types: a large body is walked in a tight loop).
    """
    stack: list[tuple[Any, tuple | None, int]] = [({root: value}, None, 0)]
    bad_text, finite = _UNSTORABLE.search, math.isfinite
    while stack:
        item, trail, depth = stack.pop()
        if max_depth is not None and depth > max_depth:
            return _path(trail) or "body", too_deep(max_depth)
        containers = []
        for key, child in item.items() if type(item) is dict else enumerate(item):
            kind = type(child)
            if kind is str:
                if bad_text(child):
                    return _path((trail, key)) or "body", UNSTORABLE
            elif kind is dict or kind is list:
                containers.append((child, (trail, key), depth + 1))
            elif kind is float and not finite(child):
                return _path((trail, key)) or "body", NON_FINITE
            if type(key) is str and bad_text(key) and depth:
                return _path(trail) or "body", UNSTORABLE
        stack.extend(reversed(containers))
    return None


def _read_body() -> bytes:
    """The body, read once (and cached for the view); 413 past MAX_CONTENT_LENGTH."""
    data = request.get_data(cache=True)
    limit = request.max_content_length
    # A streamed body is cut off at the limit without an error: see whether more was sent.
    if limit is not None and request.content_length is None and len(data) >= limit:
        if request.environ["wsgi.input"].read(1):
            raise body_too_large(limit)
    return data


def _json_body() -> tuple[Any, tuple[str, str] | None]:
    """The parsed JSON body (None if absent or not JSON) and a problem found while parsing."""
    try:
        data = _read_body()
        body = request.get_json(silent=True)
        if body is None and data.strip():
            json.loads(data)  # why it failed: only some of the reasons are ours
    except RecursionError:  # deeper than the interpreter's json can go
        return None, ("body", too_deep(current_app.config["JSON_MAX_DEPTH"]))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, None  # not JSON: the view's own parsing answers 400
    except ValueError:  # the interpreter's limit on the digits of an integer
        return None, ("body", TOO_MANY_DIGITS)
    return body, None


def check_body_size() -> None:
    """413 for a body declared larger than MAX_CONTENT_LENGTH; one without a Content-Length
    (chunked) is cut off at the limit while it is read."""
    limit = request.max_content_length
    if limit is not None and (request.content_length or 0) > limit:
        raise body_too_large(limit)


def body_too_large(limit: int) -> RequestEntityTooLarge:
    """The 413 error, naming the limit."""
    return RequestEntityTooLarge(
        f"The request body is larger than the limit of {limit} bytes (MAX_CONTENT_LENGTH)."
    )


def reject_bad_input():
    """The before_request hook: check the body's size, then path parameters, the query string
    and a JSON body."""
    check_body_size()
    sources: list[tuple[str, Any, int | None]] = [
        ("path", dict(request.view_args or {}), None),
        ("query", {key: request.args.getlist(key) for key in request.args}, None),
    ]
    if request.is_json:
        body, problem = _json_body()
        if problem is not None:
            return error_body(422, problem[1], {problem[0]: [problem[1]]})
        if body is not None:
            sources.append(("", body, current_app.config["JSON_MAX_DEPTH"]))
    for location, values, max_depth in sources:
        problem = find_problem(values, location, max_depth)
        if problem:
            where, message = problem
            return error_body(422, message, {where: [message]})
    return None


def init_input_guard(app: Flask) -> None:
    """Install the guard before every request."""
    app.before_request(reject_bad_input)
