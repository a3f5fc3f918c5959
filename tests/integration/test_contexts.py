"""Context on a real PostgreSQL: versions, merges by strategy, conflicts, expiry, task outputs."""

import json
from datetime import timedelta

import pytest

from app.services import contexts, task_context
from app.services.errors import Conflict, NotFound, ValidationFailed
from models import Context, Session
from models.base import utcnow

TARGET = {"owner": "ana", "tags": ["api"], "limits": {"cpu": 1, "memory": 512}}
SOURCE = {"owner": "bob", "tags": ["ui"], "limits": {"memory": 1024, "disk": 10}}


@pytest.fixture
def session_id(db):
    session = Session(title="t", prompt="p")
    db.add(session)
    db.flush()
    return session.id


def seed(db, session_id, value=TARGET, key="conventions"):
    entry, created = contexts.write_entry(db, "session", session_id, key, value)
    assert created
    return ("session", session_id, key)


@pytest.mark.parametrize(
    "strategy, expected",
    [
        ("last_write_wins", SOURCE),
        ("deep_merge",
         {"owner": "bob", "tags": ["api", "ui"], "limits": {"cpu": 1, "memory": 1024, "disk": 10}}),
        ("prefer_source",
         {"owner": "bob", "tags": ["ui"], "limits": {"cpu": 1, "memory": 1024, "disk": 10}}),
        ("prefer_target",
         {"owner": "ana", "tags": ["api"], "limits": {"cpu": 1, "memory": 512, "disk": 10}}),
    ],
)  # fmt: skip
def test_merge_with_each_strategy(db, session_id, strategy, expected):
    target = seed(db, session_id)
    entry = contexts.merge_entry(db, target, strategy, value=SOURCE, source="task:ui")
    assert entry.value == expected
    assert entry.version == 2 and entry.pending_merge is None
    versions = contexts.history(db, *target)
    assert [(v.version, v.strategy) for v in versions] == [(1, "last_write_wins"), (2, strategy)]
    assert versions[1].source == "task:ui"


def test_manual_merge_records_conflicts_until_resolved(db, session_id):
    target = seed(db, session_id)
    entry = contexts.merge_entry(db, target, "manual", value=SOURCE, source="task:ui")
    assert entry.value == TARGET  # unresolved: the value stays as it was
    assert entry.version == 2
    conflicts = {c["path"]: (c["target"], c["source"]) for c in entry.pending_merge["conflicts"]}
    assert conflicts == {
        "/owner": ("ana", "bob"),
        "/tags": (["api"], ["ui"]),
        "/limits/memory": (512, 1024),
    }
    assert entry.pending_merge["merged"]["limits"]["disk"] == 10  # the clash-free part waits too
    with pytest.raises(Conflict, match="unresolved"):
        contexts.merge_entry(db, target, "deep_merge", value={"x": 1})
    with pytest.raises(ValidationFailed, match="/tags"):
        contexts.resolve_entry(db, target, {"/owner": "cy", "/limits/memory": 768})
    resolved = contexts.resolve_entry(db, target, {"/owner": "cy"}, default="source")
    assert resolved.value == {
        "owner": "cy",
        "tags": ["ui"],
        "limits": {"cpu": 1, "memory": 1024, "disk": 10},
    }
    assert resolved.version == 3 and resolved.pending_merge is None
    history = contexts.history(db, *target)
    assert [len(v.conflicts) for v in history] == [0, 3, 0]
    assert history[2].note == "resolved"
    with pytest.raises(Conflict, match="no unresolved merge"):
        contexts.resolve_entry(db, target, {})


def test_manual_merge_without_conflicts_applies_at_once(db, session_id):
    target = seed(db, session_id)
    entry = contexts.merge_entry(db, target, "manual", value={"limits": {"disk": 5}})
    assert entry.pending_merge is None and entry.value["limits"]["disk"] == 5


def test_merge_from_another_entry_respects_which_was_written_last(db, session_id):
    source = ("global", None, "defaults")
    contexts.write_entry(db, *source, {"owner": "ops"})
    target = seed(db, session_id)  # written after the source: it is the newer one
    kept = contexts.merge_entry(db, target, "last_write_wins", source_ref=source)
    assert kept.value == TARGET and kept.version == 1
    merged = contexts.merge_entry(db, target, "prefer_source", source_ref=source)
    assert merged.value["owner"] == "ops" and merged.source == "global:-:defaults"


def test_stale_version_is_a_conflict(db, session_id):
    target = seed(db, session_id)
    contexts.write_entry(db, *target, {"v": 2}, expected_version=1)
    with pytest.raises(Conflict) as error:
        contexts.write_entry(db, *target, {"v": 3}, expected_version=1)
    assert error.value.status == 409 and "is 2" in error.value.message
    with pytest.raises(Conflict):
        contexts.merge_entry(db, target, "deep_merge", value={}, expected_version=1)
    with pytest.raises(Conflict):
        contexts.write_entry(db, "global", None, "fresh", 1, expected_version=3)
    assert contexts.write_entry(db, "global", None, "fresh", 1, expected_version=0)[1]


def test_history_and_diff(db, session_id):
    target = seed(db, session_id)
    contexts.write_entry(db, *target, {**TARGET, "owner": "cy", "region": "eu"})
    contexts.write_entry(db, *target, {"owner": "cy"})
    assert [v.version for v in contexts.history(db, *target)] == [1, 2, 3]
    diff = contexts.diff_entry(db, *target, 1, 2)
    assert diff["changes"] == [
        {"op": "changed", "path": "/owner", "old": "ana", "new": "cy"},
        {"op": "added", "path": "/region", "new": "eu"},
    ]
    removed = {change["path"] for change in contexts.diff_entry(db, *target, 2, 3)["changes"]}
    assert removed == {"/tags", "/limits", "/region"}
    with pytest.raises(NotFound):
        contexts.diff_entry(db, *target, 1, 9)


def test_same_value_again_makes_no_new_version(db, session_id):
    target = seed(db, session_id)
    entry, created = contexts.write_entry(db, *target, json.loads(json.dumps(TARGET)))
    assert not created and entry.version == 1


def test_temporary_entries_expire(db):
    entry, _ = contexts.write_entry(db, "temporary", "job-7", "scratch", {"n": 1}, ttl_seconds=60)
    assert entry.expires_at > utcnow() + timedelta(seconds=50)
    contexts.write_entry(db, "temporary", "job-7", "scratch", {"n": 2})
    entry.expires_at = utcnow() - timedelta(seconds=1)
    db.flush()
    with pytest.raises(NotFound):
        contexts.get_entry(db, "temporary", "job-7", "scratch")
    assert contexts.list_entries(db, scope="temporary") == []
    again, created = contexts.write_entry(db, "temporary", "job-7", "scratch", {"n": 3})
    assert created and again.version == 1  # an expired key starts over
    again.expires_at = utcnow() - timedelta(seconds=1)
    db.flush()
    assert contexts.purge_expired(db) == 1
    assert db.query(Context).count() == 0


@pytest.mark.parametrize(
    "ref, ttl, field",
    [
        (("session", "no-such-session", "k"), None, "owner_id"),
        (("agent", None, "k"), None, "owner_id"),
        (("global", "someone", "k"), None, "owner_id"),
        (("global", None, "k"), 60, "ttl_seconds"),
        (("planet", None, "k"), None, "scope"),
        (("global", None, "bad key"), None, "key"),
    ],
)
def test_invalid_targets_are_refused(db, ref, ttl, field):
    with pytest.raises(ValidationFailed) as error:
        contexts.write_entry(db, *ref, 1, ttl_seconds=ttl)
    assert field in error.value.errors


def test_a_changed_task_output_writes_a_new_version_with_history(db, session_id):
    task_context.record_task_output(db, session_id, "schema", {"summary": "v1"})
    task_context.record_task_output(db, session_id, "schema", {"summary": "v2"})
    versions = contexts.history(db, "session", session_id, "tasks.schema")
    assert [(v.version, v.value["summary"], v.strategy) for v in versions] == [
        (1, "v1", "last_write_wins"),
        (2, "v2", "last_write_wins"),
    ]
    assert contexts.get_entry(db, "session", session_id, "tasks.schema").version == 2


def test_a_task_output_settles_a_pending_manual_merge(db, session_id):
    task_context.record_task_output(db, session_id, "schema", {"summary": "v1"})
    target = ("session", session_id, "tasks.schema")
    contexts.merge_entry(db, target, "manual", value={"summary": "theirs"})
    assert contexts.get_entry(db, *target).pending_merge
    task_context.record_task_output(db, session_id, "schema", {"summary": "v1"})
    entry = contexts.get_entry(db, *target)
    assert entry.pending_merge is None and entry.value["summary"] == "v1"
    assert contexts.history(db, *target)[-1].note == "replaced an unresolved merge"


def test_task_outputs_reach_successors_as_context(db, session_id):
    result = {"succeeded": True, "summary": "Added the model", "files_changed": ["m.py"],
              "stdout_tail": "noise"}  # fmt: skip
    task_context.record_task_output(db, session_id, "schema", result)
    # A redelivery changes nothing.
    task_context.record_task_output(db, session_id, "schema", result)
    task_context.record_task_output(db, session_id, "ui", {"summary": "Button", "succeeded": True})
    contexts.write_entry(db, "session", session_id, "conventions", {"style": "black"})
    entry = contexts.get_entry(db, "session", session_id, "tasks.schema")
    assert entry.version == 1 and entry.source == "task:schema"
    received = task_context.context_for_task(db, session_id, ["schema", "missing"])
    assert received == {
        "predecessors": {
            "schema": {"summary": "Added the model", "files_changed": ["m.py"], "succeeded": True}
        },
        "session": {"conventions": {"style": "black"}},
        "truncated": False,
    }


def test_task_context_is_trimmed_to_the_budget(db, session_id):
    files = [f"src/module_{n}.py" for n in range(300)]
    task_context.record_task_output(
        db, session_id, "a", {"summary": "A" * 20000, "files_changed": files}
    )
    task_context.record_task_output(db, session_id, "b", {"summary": "short"})
    contexts.write_entry(db, "session", session_id, "notes", "N" * 5000)
    received = task_context.context_for_task(db, session_id, ["a", "b"], budget_chars=2000)
    assert len(json.dumps(received, ensure_ascii=False, separators=(",", ":"))) <= 2000
    assert received["truncated"] is True and "omitted" not in received
    assert received["predecessors"]["b"]["summary"] == "short"
    assert received["predecessors"]["a"]["summary"].startswith("AAAA")
    assert received["predecessors"]["a"]["files_changed"][-1].endswith("more")
    tiny = task_context.context_for_task(db, session_id, ["a", "b"], budget_chars=200)
    assert len(json.dumps(tiny, ensure_ascii=False, separators=(",", ":"))) <= 200
    assert tiny["omitted"] >= 1 and "notes" not in tiny["session"]
