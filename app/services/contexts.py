"""Context: scoped, versioned key/value entries that carry task outputs along a session's DAG."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession

from models import Agent, Context, ContextVersion, Session
from models.base import utcnow

from . import context_values
from .errors import Conflict, NotFound, ValidationFailed

logger = logging.getLogger(__name__)

SCOPES = ("session", "agent", "global", "temporary")
DEFAULT_TTL_SECONDS = 3600
MAX_TTL_SECONDS = 30 * 24 * 3600
KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")


def _live(query, now: datetime):
    return query.where((Context.expires_at.is_(None)) | (Context.expires_at > now))


def _select(scope: str, owner_id: str | None, key: str):
    owner = Context.owner_id.is_(None) if owner_id is None else Context.owner_id == owner_id
    return select(Context).where(Context.scope == scope, owner, Context.key == key)


def get_entry(db: DbSession, scope: str, owner_id: str | None, key: str) -> Context:
    """The live entry for (scope, owner, key), or NotFound (an expired entry is gone)."""
    if scope not in SCOPES:
        raise ValidationFailed("Unknown scope.", {"scope": [f"Use one of {', '.join(SCOPES)}."]})
    entry = db.scalar(_live(_select(scope, owner_id, key), utcnow()))
    if entry is None:
        owner = f" of {owner_id}" if owner_id else ""
        raise NotFound(f"No {scope} context{owner} named {key!r}.")
    return entry


def list_entries(
    db: DbSession,
    *,
    scope: str | None = None,
    owner_id: str | None = None,
    prefix: str | None = None,
) -> list[Context]:
    """Live entries, filtered by scope, owner and key prefix, by scope, owner and key."""
    query = _live(select(Context), utcnow())
    if scope:
        query = query.where(Context.scope == scope)
    if owner_id:
        query = query.where(Context.owner_id == owner_id)
    if prefix:
        query = query.where(Context.key.startswith(prefix, autoescape=True))
    return list(db.scalars(query.order_by(Context.scope, Context.owner_id, Context.key)))


def _check_target(db: DbSession, ref: tuple[str, str | None, str], ttl: int | None = None) -> None:
    scope, owner_id, key = ref
    errors: dict[str, list[str]] = {}
    if not KEY_PATTERN.match(key):
        errors["key"] = ["Use 1-200 letters, digits, _ . : - characters."]
    if scope not in SCOPES:
        errors["scope"] = [f"Use one of {', '.join(SCOPES)}."]
    elif scope in ("session", "agent"):
        model = Session if scope == "session" else Agent
        if not owner_id or db.get(model, owner_id) is None:
            errors["owner_id"] = [f"A {scope} context needs an existing {scope} id."]
    elif scope == "global" and owner_id:
        errors["owner_id"] = ["A global context has no owner."]
    if ttl is not None and scope != "temporary":
        errors["ttl_seconds"] = ["Only temporary contexts expire."]
    elif ttl is not None and not 1 <= ttl <= MAX_TTL_SECONDS:
        errors["ttl_seconds"] = [f"Use 1-{MAX_TTL_SECONDS} seconds."]
    if errors:
        raise ValidationFailed("Invalid context target.", errors)


def _locked(db: DbSession, scope: str, owner_id: str | None, key: str) -> Context | None:
    """The entry, row-locked; an expired one is deleted so the key starts over."""
    entry = db.scalar(_select(scope, owner_id, key).with_for_update(key_share=True))
    if entry is not None and entry.expires_at is not None and entry.expires_at <= utcnow():
        db.delete(entry)
        db.flush()
        return None
    return entry


def _check_version(entry: Context | None, expected: int | None) -> None:
    current = entry.version if entry is not None else 0
    if expected is not None and expected != current:
        raise Conflict(
            f"Context version is {current}, not {expected}; read it again and retry.",
            {"expected_version": [f"Current version is {current}."]},
        )


def _save(
    db: DbSession,
    entry: Context | None,
    ref: tuple[str, str | None, str],
    value: Any,
    *,
    strategy: str,
    source: str | None,
    ttl: int | None = None,
    conflicts: list | None = None,
    pending: dict | None = None,
    note: str | None = None,
) -> Context:
    """Store a new version of the entry (creating it if needed) and its history row."""
    scope, owner_id, key = ref
    if entry is None:
        entry = Context(scope=scope, owner_id=owner_id, key=key, value=value, version=1)
        if scope == "temporary":
            entry.expires_at = utcnow() + timedelta(seconds=ttl or DEFAULT_TTL_SECONDS)
        try:
            with db.begin_nested():
                db.add(entry)
                db.flush()
        except IntegrityError:  # a concurrent writer created it first: write on top of theirs
            entry = _locked(db, scope, owner_id, key)
            if entry is None:
                raise
            entry.version += 1
    else:
        entry.version += 1
        if ttl is not None:
            entry.expires_at = utcnow() + timedelta(seconds=ttl)
    entry.value = value
    entry.source = source
    entry.pending_merge = pending
    db.add(
        ContextVersion(
            context_id=entry.id, version=entry.version, value=value, strategy=strategy,
            source=source, conflicts=conflicts or [], note=note,
        )
    )  # fmt: skip
    db.flush()
    return entry


def write_entry(
    db: DbSession,
    scope: str,
    owner_id: str | None,
    key: str,
    value: Any,
    *,
    expected_version: int | None = None,
    source: str | None = None,
    ttl_seconds: int | None = None,
) -> tuple[Context, bool]:
    """Set a value (last write wins); 409 if `expected_version` is not current; (entry, created).

    Writing the current value again changes nothing; a write settles any pending merge.
    """
    _check_target(db, (scope, owner_id, key), ttl_seconds)
    entry = _locked(db, scope, owner_id, key)
    _check_version(entry, expected_version)
    if entry is not None and context_values.same(entry.value, value) and not entry.pending_merge:
        return entry, False
    note = "replaced an unresolved merge" if entry is not None and entry.pending_merge else None
    ref = (scope, owner_id, key)
    saved = _save(db, entry, ref, value, strategy="last_write_wins", source=source,
                  ttl=ttl_seconds, note=note)  # fmt: skip
    return saved, entry is None


def merge_entry(
    db: DbSession,
    target: tuple[str, str | None, str],
    strategy: str,
    *,
    value: Any = None,
    source_ref: tuple[str, str | None, str] | None = None,
    expected_version: int | None = None,
    source: str | None = None,
) -> Context:
    """Merge a value (or another entry) into the target entry with a strategy.

    A manual merge that meets conflicts keeps the value as it was and records the conflicts
    in `pending_merge` until `resolve_entry`; no other change is merged meanwhile (409).
    """
    if strategy not in context_values.STRATEGIES:
        raise ValidationFailed(
            "Unknown strategy.", {"strategy": [f"Use {context_values.STRATEGIES}."]}
        )
    scope, owner_id, key = target
    _check_target(db, target)
    newer = True
    if source_ref is not None:
        other = get_entry(db, *source_ref)
        value, source = other.value, source or ":".join(part or "-" for part in source_ref)
    entry = _locked(db, scope, owner_id, key)
    _check_version(entry, expected_version)
    if entry is None:
        return _save(db, None, target, value, strategy=strategy, source=source)
    if entry.pending_merge:
        raise Conflict("This context has an unresolved manual merge; resolve it first.")
    if source_ref is not None:
        newer = other.updated_at >= entry.updated_at
    merged, conflicts = context_values.merge_values(
        entry.value, value, strategy, source_is_newer=newer
    )
    if conflicts:
        pending = {"merged": merged, "conflicts": conflicts, "source": source}
        note = f"{len(conflicts)} conflict(s) await resolution"
        return _save(db, entry, target, entry.value, strategy=strategy, source=entry.source,
                     conflicts=conflicts, pending=pending, note=note)  # fmt: skip
    if context_values.same(merged, entry.value):
        return entry
    return _save(db, entry, target, merged, strategy=strategy, source=source)


def resolve_entry(
    db: DbSession,
    target: tuple[str, str | None, str],
    resolutions: dict[str, Any],
    *,
    default: str | None = None,
    expected_version: int | None = None,
) -> Context:
    """Settle a pending manual merge with a value per conflict path (or a default side)."""
    entry = _locked(db, *target)
    if entry is None:
        raise NotFound(f"No {target[0]} context named {target[2]!r}.")
    _check_version(entry, expected_version)
    pending = entry.pending_merge
    if not pending:
        raise Conflict("This context has no unresolved merge.")
    try:
        value = context_values.resolve(
            pending["merged"], pending["conflicts"], resolutions, default
        )
    except (ValueError, KeyError, TypeError) as error:
        raise ValidationFailed(f"Cannot resolve: {error}", {"resolutions": [str(error)]}) from error
    return _save(db, entry, target, value, strategy="manual", source=pending.get("source"),
                 note="resolved")  # fmt: skip


def history(db: DbSession, scope: str, owner_id: str | None, key: str) -> list[ContextVersion]:
    """Every version of the entry, oldest first."""
    entry = get_entry(db, scope, owner_id, key)
    query = select(ContextVersion).where(ContextVersion.context_id == entry.id)
    return list(db.scalars(query.order_by(ContextVersion.version)))


def diff_entry(
    db: DbSession, scope: str, owner_id: str | None, key: str, from_version: int, to_version: int
) -> dict[str, Any]:
    """The changes between two versions of an entry."""
    versions = {row.version: row.value for row in history(db, scope, owner_id, key)}
    missing = [v for v in (from_version, to_version) if v not in versions]
    if missing:
        raise NotFound(f"No version {missing[0]} of {key!r}; it has 1-{max(versions)}.")
    changes = context_values.diff_values(versions[from_version], versions[to_version])
    return {"from": from_version, "to": to_version, "changes": changes}


def purge_expired(db: DbSession, now: datetime | None = None) -> int:
    """Delete expired temporary entries (and their history); return how many."""
    result = db.execute(delete(Context).where(Context.expires_at <= (now or utcnow())))
    if result.rowcount:
        logger.info("contexts_purged count=%d", result.rowcount)
    return result.rowcount
