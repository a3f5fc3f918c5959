"""Process logging for web, worker and beat: plain or JSON lines, with secrets redacted."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

REDACTED = "***"
ID_FIELDS = ("session_id", "task_id", "agent_id")
SECRET_KEY = re.compile(
    r"pass(word|wd)?|secret|token|api[_-]?key|authorization|cookie|credential", re.I
)
# Names that contain a secret-looking word but hold figures: token counts, fencing tokens.
NOT_SECRET_KEY = re.compile(r"tokens$|fenc|_(count|id|ids)$|prefix$|^(max|min|total)_", re.I)
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

_TEXT_RULES = [
    # Authorization: Bearer xyz / Basic xyz (headers printed as text or dict reprs)
    (re.compile(r"((?:Bearer|Basic|Token)\s+)[A-Za-z0-9._~+/=-]{8,}", re.I), rf"\g<1>{REDACTED}"),
    # API tokens of this project, wherever they appear.
    (re.compile(r"\borch_[A-Za-z0-9_-]{8,}"), f"orch_{REDACTED}"),
    # Credentials inside URLs: scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@/\s]+@", re.I), rf"\g<1>{REDACTED}@"),
    # key=value and key: value pairs whose key names a secret (quoted values too).
    (
        re.compile(
            r"""(?P<key>['"]?(?P<name>[\w-]+)['"]?\s*[=:]\s*)(?!(?:Bearer|Basic|Token)\s|\*\*\*)"""
            r"""(?P<value>(?P<quote>['"]).*?(?P=quote)|[^'"\s,;&}]+)"""
        ),
        lambda m: (
            f"{m['key']}{m['quote'] or ''}{REDACTED}{m['quote'] or ''}"
            if is_secret_key(m["name"])
            else m[0]
        ),
    ),
]

_handler_marker = "_orchestrator_handler"


def is_secret_key(name: str) -> bool:
    """Whether a field called `name` holds a secret (password, token, API key, …)."""
    return bool(SECRET_KEY.search(name)) and not NOT_SECRET_KEY.search(name)


# Every rule above needs one of these words in the text; most log lines have none, and one
# search is far cheaper than running every rule on every line.
_MAY_HOLD_SECRET = re.compile(
    r"pass|secret|token|api[_-]?key|authori[sz]ation|cookie|credential|bearer|basic|orch_|://",
    re.I,
)


def redact_text(text: str) -> str:
    """The text with bearer tokens, URL passwords and `secret=value` pairs masked."""
    if not _MAY_HOLD_SECRET.search(text):
        return text
    for pattern, replacement in _TEXT_RULES:
        text = pattern.sub(replacement, text)
    return text


def redact_value(value: Any, depth: int = 0) -> Any:
    """A copy of dicts/lists/tuples with values under secret-looking keys masked."""
    if depth > 6:
        return value
    if isinstance(value, Mapping):
        return {
            key: REDACTED
            if isinstance(key, str) and is_secret_key(key)
            else redact_value(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(redact_value(item, depth + 1) for item in value)
    if isinstance(value, str):
        return redact_text(value)
    return value


class RedactSecrets(logging.Filter):
    """Mask secrets in a record's message, arguments and traceback before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            args = record.args
            record.args = (
                redact_value(args)
                if isinstance(args, Mapping)
                else tuple(redact_value(arg) for arg in args)
            )
        try:
            message = record.getMessage()
        except Exception:  # a malformed log call must not break logging
            message = str(record.msg)
        record.msg, record.args = redact_text(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        return True


def _ids(record: logging.LogRecord, message: str) -> dict[str, str]:
    found = {}
    for name in ID_FIELDS:
        value = getattr(record, name, None)
        if value is None:
            match = re.search(rf"\b{name}=([A-Za-z0-9_.:-]+)", message)
            value = match.group(1) if match and match.group(1) != "None" else None
        if value is not None:
            found[name] = str(value)
    return found


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, ids, and the Celery task if any."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
            **_ids(record, message),
        }
        task = _current_celery_task()
        if task is not None:
            entry["celery_task"], entry["celery_task_id"] = task
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = redact_text(record.exc_text)
        return json.dumps(entry, default=str)


def _current_celery_task() -> tuple[str, str] | None:
    celery_state = sys.modules.get("celery._state")
    task = celery_state.get_current_task() if celery_state else None
    if task is None or task.request.id is None:
        return None
    return task.name, task.request.id


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time (test runners swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(log_format: str | None = None, level: str | None = None) -> None:
    """Install one stderr handler on the root logger (replacing ours from an earlier call)."""
    log_format = (log_format or os.environ.get("LOG_FORMAT") or "plain").lower()
    level = (level or os.environ.get("LOG_LEVEL") or "INFO").upper()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _handler_marker, False):
            root.removeHandler(handler)
    handler = _StderrHandler()
    setattr(handler, _handler_marker, True)
    handler.addFilter(RedactSecrets())
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(PLAIN_FORMAT)
    )
    root.addHandler(handler)
    root.setLevel(level)


def hook_celery_logging() -> None:
    """Make Celery worker and beat use `configure_logging` instead of their own set-up."""
    from celery import signals

    def _setup(loglevel=None, **_kwargs) -> None:
        level = loglevel if isinstance(loglevel, str) else logging.getLevelName(loglevel or 20)
        configure_logging(level=os.environ.get("LOG_LEVEL") or level)

    signals.setup_logging.connect(_setup, weak=False, dispatch_uid="orchestrator-logging")
