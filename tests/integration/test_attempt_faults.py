"""Faults after a claim end the attempt in PostgreSQL, and no attempt runs more than allowed:
the runner on real PostgreSQL and Redis, with a shell agent running real commands."""

import subprocess

import pytest
from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import DataError

from app.engine import attempts, lifecycle, outcome, runner
from app.engine.claim import claim
from app.engine.launch import launch
from app.engine.outcome import record_outcome
from app.services import agents, sessions
from app.workspaces import branch_exists, branch_name, remove_worktrees
from models import Session, SessionEvent, SessionTask
from models.enums import SessionStatus, TaskStatus
from tests.integration.test_execution import OK

WORKER = "test-worker"


def make_session(db, tasks, workdir=None, max_attempts=2):
    """A queued session of shell tasks (key, command, depends_on) on one shell agent."""
    agents.register_agent(db, name="sh", type="implementer", driver="shell",
                          capabilities=["code_generation"], capacity=4)  # fmt: skip
    specs = [
        {"key": key, "description": "", "command": command, "required_capabilities": [],
         "depends_on": deps, "optional": False, "timeout_seconds": 60,
         "max_attempts": max_attempts, "estimate_hours": None}
        for key, command, deps in tasks
    ]  # fmt: skip
    data = {"title": "t", "prompt": "p", "dag": {"tasks": specs}}
    if workdir:
        data["workdir"] = str(workdir)
    # Under WORKSPACE_ROOT, as the API does: a root worker gives such a workdir to COMMAND_USER.
    root = current_app.config["WORKSPACE_ROOT"]
    session, _ = sessions.create_session(db, data, workspace_root=root)
    sessions.start_session(db, session)
    db.commit()
    dispatch = launch(db, session.id)
    db.commit()
    return session, dispatch.epoch


def task(db, session, key) -> SessionTask:
    db.expire_all()
    return db.scalar(select(SessionTask).filter_by(session_id=session.id, key=key))


def events(db, session, type_):
    return db.scalars(select(SessionEvent).filter_by(session_id=session.id, type=type_)).all()


def test_output_with_nul_and_lone_surrogates_is_stored_and_the_task_completes(db):
    session, epoch = make_session(db, [("a", r"printf 'x\000y\n'; printf 'z\355\240\200' >&2", [])])
    runner.run_task(session.id, task(db, session, "a").id, epoch, WORKER)
    done = task(db, session, "a")
    assert done.status is TaskStatus.COMPLETED
    assert "\x00" not in done.result["stdout_tail"] and "x" in done.result["stdout_tail"]


def test_a_value_postgres_rejects_ends_the_attempt_as_a_retryable_failure(db, monkeypatch):
    def rejected(*_args, **_kwargs):
        raise DataError("INSERT INTO checkpoints ...", {}, Exception("invalid input syntax"))

    monkeypatch.setattr(outcome, "_checkpoint", rejected)
    session, epoch = make_session(db, [("a", "true", [])])
    dispatch = runner.run_task(session.id, task(db, session, "a").id, epoch, WORKER)
    failed = task(db, session, "a")
    assert failed.status is TaskStatus.READY  # waiting for its retry, not stuck in progress
    assert "invalid input syntax" in failed.error
    assert dispatch.retry_in is not None
    assert db.get(Session, session.id).status is SessionStatus.DEGRADED


def test_an_attempt_beyond_max_attempts_never_runs(db, tmp_path):
    marker = tmp_path / "ran"
    session, epoch = make_session(db, [("a", f"touch {marker}", []), ("b", "true", ["a"])])
    a = task(db, session, "a")
    # A worker died during the last allowed attempt and the reconciler requeued the task.
    db.execute(update(SessionTask).where(SessionTask.id == a.id).values(executions=2))
    db.commit()
    runner.run_task(session.id, a.id, epoch, WORKER)
    assert not marker.exists()
    assert task(db, session, "a").status is TaskStatus.FAILED
    assert "Out of attempts (2 of 2)" in task(db, session, "a").error
    assert task(db, session, "b").status is TaskStatus.SKIPPED
    db.expire_all()
    assert db.get(Session, session.id).status is SessionStatus.FAILED


def test_attempt_numbers_only_grow_so_a_stopped_attempt_cannot_write(db):
    session, epoch = make_session(db, [("a", "true", [])])
    a = task(db, session, "a")
    old = claim(db, session.id, a.id, epoch, WORKER)
    assert attempts.start_attempt(db, old, 1)
    db.commit()
    lifecycle.apply_action(db, session.id, "stop")
    db.commit()
    lifecycle.apply_action(db, session.id, "retry")
    db.commit()
    epoch = launch(db, session.id).epoch
    db.commit()
    new = claim(db, session.id, a.id, epoch, WORKER)
    assert attempts.start_attempt(db, new, 2)
    db.commit()
    assert new.attempt > old.attempt
    assert not attempts.renew_lease(db, old)  # its driver stops at its next heartbeat
    assert record_outcome(db, old, epoch, OK, 0.1, 2) is None
    db.commit()
    assert events(db, session, "task.outcome_rejected")
    record_outcome(db, new, epoch, OK, 0.1, 2)
    db.commit()
    assert task(db, session, "a").status is TaskStatus.COMPLETED


def test_a_busy_agent_gives_the_task_back_under_the_same_attempt_number(db):
    session, epoch = make_session(db, [("a", "true", [])])
    a = task(db, session, "a")
    job = claim(db, session.id, a.id, epoch, WORKER)
    assert attempts.release_assignment(db, job)
    db.commit()
    again = claim(db, session.id, a.id, epoch, WORKER)
    assert again.attempt == job.attempt + 1


def git_repository(path):
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


def test_a_git_workdir_without_commits_works_and_stays_unborn(db, tmp_path):
    repo = git_repository(tmp_path / "repo")
    session, epoch = make_session(db, [("a", "echo hi > a.txt", [])], workdir=repo)
    runner.run_task(session.id, task(db, session, "a").id, epoch, WORKER)
    assert task(db, session, "a").status is TaskStatus.COMPLETED
    branch = branch_name(session.id, "a")
    assert branch_exists(repo, branch)
    shown = subprocess.run(["git", "show", f"{branch}:a.txt"], cwd=repo, capture_output=True,
                           text=True, check=True)  # fmt: skip
    assert shown.stdout == "hi\n"
    head = subprocess.run(["git", "rev-parse", "-q", "--verify", "HEAD"], cwd=repo)
    assert head.returncode != 0  # the user's own branch still has no commit


def test_a_workdir_that_cannot_be_made_fails_at_once_with_the_reason(db, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    session, epoch = make_session(db, [("a", "true", [])], workdir=blocker / "sub", max_attempts=3)
    runner.run_task(session.id, task(db, session, "a").id, epoch, WORKER)
    failed = task(db, session, "a")
    assert failed.status is TaskStatus.FAILED
    assert failed.executions == 1  # not retried: the same directory fails the same way
    assert "cannot be created" in failed.error and str(blocker) in failed.error


@pytest.mark.parametrize("action", ["retry", "restore"])
def test_completed_tasks_whose_branch_was_cleaned_up_run_again(db, tmp_path, action):
    repo = git_repository(tmp_path / "repo")
    session, epoch = make_session(
        db, [("a", "echo a > a.txt", []), ("b", "false", [])], workdir=repo, max_attempts=1
    )
    for key in ("a", "b"):
        runner.run_task(session.id, task(db, session, key).id, epoch, WORKER)
    db.expire_all()
    assert db.get(Session, session.id).status is SessionStatus.FAILED
    remove_worktrees(repo, session.id)  # the worktree clean-up beat job ran meanwhile
    if action == "retry":
        lifecycle.apply_action(db, session.id, "retry")
    else:
        checkpoint = db.scalar(select(outcome.Checkpoint).filter_by(session_id=session.id))
        lifecycle.restore_checkpoint(db, session.id, checkpoint.id)
    db.commit()
    assert task(db, session, "a").status is TaskStatus.PENDING
    assert events(db, session, "session.branches_lost")[0].data["rerun"] == ["a"]
