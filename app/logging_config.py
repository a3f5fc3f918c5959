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
    r"pass(word|wd|phrase)?|secret|token|api[_-]?key|private[_-]?key|access[_-]?key"
    r"|authori[sz]ation|(?<![a-z])auth(?![a-z])|cookie|credential|session[_-]?key|signature|jwt",
    re.I,
)
# Names that contain a secret-looking word but hold figures: token counts, fencing tokens.
NOT_SECRET_KEY = re.compile(r"tokens$|fenc|_(count|id|ids)$|prefix$|^(max|min|total)_", re.I)
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# An authorization scheme kept in front of the masked credential.
_SCHEME = r"(?:Bearer|Basic|Token|Digest|Negotiate|ApiKey)\s+"
# A value after `key=` or `key: `: quoted with ' or " (also backslash-escaped, as in JSON
# inside a string; escaped quotes inside it), a flat JSON object or list, a quote never closed
# (a cut line), or a bare word.
_VALUE = (
    r"""(?P<quote>\\?["'])(?:\\.|(?!(?P=quote)).)*?(?P=quote)"""
    r"""|\{[^{}]*\}|\[[^\[\]]*\]|(?P<open>\\?["'])[^\s'"]*|(?![{\[])[^\s'",;&}\]]+"""
)


def _mask_pair(match: re.Match) -> str:
    """The value masked when the key names a secret; otherwise the secrets inside it."""
    key, scheme, value = match["key"], match["scheme"] or "", match["value"]
    if not is_secret_key(match["name"]):
        return f"{key}{scheme}{redact_text(value)}"
    if value.lstrip("'\"\\").startswith(REDACTED):
        return match[0]  # masked already
    groups = match.groupdict()
    closing = groups.get("quote") or ""
    return f"{key}{scheme}{closing or groups.get('open') or ''}{REDACTED}{closing}"


def _mask_userinfo(match: re.Match) -> str:
    user, colon, _password = match["info"].partition(":")
    return f"{match['scheme']}{user}:{REDACTED}@" if colon else f"{match['scheme']}{REDACTED}@"


_TEXT_RULES = [
    # PEM private keys, up to their END line (or the end of the text).
    (
        re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.S
        ),
        f"-----BEGIN PRIVATE KEY-----{REDACTED}-----END PRIVATE KEY-----",
    ),
    # Cookie / Set-Cookie headers: every cookie on the line.
    (re.compile(r"(\b(?:Set-)?Cookie\s*:\s*)[^\r\n'\"]+", re.I), rf"\g<1>{REDACTED}"),
    # Credentials inside URLs: scheme://user:password@host (up to the last @ of the
    # authority, so an unescaped @ in the password is covered) and scheme://token@host.
    (
        re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)(?P<info>[^\s/?#'\"]*)@", re.I),
        _mask_userinfo,
    ),
    # key=value, key: value, "key": "value", 'key': 'value', --key=value, with or without an
    # authorization scheme ("Authorization: Bearer x"), when the key names a secret.
    (
        re.compile(
            rf"""(?P<key>(?<![\w.-])(?P<kq>\\?["']?)(?P<name>[\w.-]+)(?P=kq)\s*[=:](?!//)\s*)"""
            rf"""(?P<scheme>{_SCHEME})?(?P<value>{_VALUE})""",
            re.I,
        ),
        _mask_pair,
    ),
    # ("Authorization", "Bearer x"): header tuples, quoted name and value.
    (
        re.compile(
            r"""(?P<key>(?P<kq>["'])(?P<name>[\w.-]+)(?P=kq)\s*,\s*)(?P<scheme>)"""
            r"""(?P<value>(?P<quote>["'])(?:\\.|(?!(?P=quote)).)*?(?P=quote))"""
        ),
        _mask_pair,
    ),
    # --password hunter2: a command-line flag naming a secret, then its value.
    (
        re.compile(r"(?P<key>(?<!\S)--?(?P<name>[\w-]+)\s+)(?P<scheme>)(?P<value>(?!-)[^\s'\"]+)"),
        _mask_pair,
    ),
    # JSON web tokens and this project's API tokens, wherever they appear.
    (re.compile(r"\beyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]*"), REDACTED),
    (re.compile(r"\borch_[A-Za-z0-9_-]{8,}"), f"orch_{REDACTED}"),
    # Bearer xyz / Basic xyz anywhere else: 4+ characters with a digit or one of + / = _, or
    # 20+ characters (not prose such as "basic settings").
    (
        re.compile(
            rf"({_SCHEME})(?:(?=[\w.~+/=-]*[0-9+/=_])[\w.~+/=-]{{4,}}|[\w.~+/=-]{{20,}})"
            r"(?![\w.~+/=*-])",
            re.I,
        ),
        rf"\g<1>{REDACTED}",
    ),
]

_handler_marker = "_orchestrator_handler"


def is_secret_key(name: str) -> bool:
    """Whether a field called `name` holds a secret (password, token, API key, …)."""
    return bool(SECRET_KEY.search(name)) and not NOT_SECRET_KEY.search(name)


# Every rule above needs one of these words in the text (lowercased); most log lines have
# none, and these substring tests are far cheaper than running every rule on every line.
_TRIGGERS = (
    "pass", "secret", "token", "apikey", "api_key", "api-key", "private", "accesskey",
    "access_key", "access-key", "auth", "cookie", "credential", "sessionkey", "session_key",
    "session-key", "signature", "jwt", "bearer", "basic", "digest", "negotiate", "orch_", "://",
    "eyj",
)  # fmt: skip


def _may_hold_secret(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in _TRIGGERS)


def redact_text(text: str) -> str:
    """The text with secrets masked: values of secret-named keys (key=value, key: value,
    quoted, JSON, header tuples, --flags), URL credentials, bearer/basic credentials, tokens."""
    if not _may_hold_secret(text):
        return text
    return _apply_rules(text)


def _apply_rules(text: str) -> str:
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
