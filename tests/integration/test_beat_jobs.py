"""Each operations beat job repairs the situation it exists for, on real PostgreSQL and Redis:
agent health, retention, worktree clean-up and wait-for cycles; every run is recorded."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select

from app.locks import FairSemaphore, find_wait_for_cycles
from app.services import beat_jobs
from app.services.events import record_event
from app.workspaces import create_worktree, ensure_repository, git
from models import Agent, BeatJobRun, Checkpoint, Session, SessionEvent, SessionTask
from models.base import utcnow
from models.enums import AgentStatus, SessionStatus, TaskStatus
from tasks import maintenance as jobs
from tests.conftest import wait_until
from tests.integration.test_semaphore import Waiter


@pytest.fixture
def fanned_out(monkeypatch, redis_client):
    """Run fanned-out tasks inline (no broker race with other tests' workers); list them."""
    sent = []

    def inline(task, calls):
        for args in calls:
            sent.append((task.name, args))
            task(*args)
        return len(calls)

    monkeypatch.setattr(jobs, "fan_out", inline)
    return sent


def last_run(db, job):
    db.expire_all()
    return db.scalars(
        select(BeatJobRun).where(BeatJobRun.job == job).order_by(BeatJobRun.id.desc())
    ).first()


def add_agent(db, name, driver="shell", **fields):
    agent = Agent(name=name, type="implementer", driver=driver, capabilities=["code_generation"],
                  **fields)  # fmt: skip
    db.add(agent)
    db.commit()
    return agent


class Health(BaseHTTPRequestHandler):
    healthy = True

    def do_GET(self):  # noqa: N802 - http.server's naming
        body = json.dumps({"healthy": Health.healthy, "version": "test"}).encode()
        self.send_response(200 if self.path == "/global/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def health_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_agent_health_marks_unreachable_and_silent_agents_unhealthy_and_recovers_them(
    db, fanned_out, health_server
):
    down = add_agent(db, "oc-down", "opencode", endpoint="http://127.0.0.1:9/")
    flaky = add_agent(db, "oc-flaky", "opencode", endpoint=health_server)
    silent = add_agent(db, "shell-silent", last_heartbeat_at=utcnow() - timedelta(minutes=10))
    fresh = add_agent(db, "shell-fresh")
    parked = add_agent(
        db, "oc-parked", "opencode", endpoint="http://127.0.0.1:9/", maintenance=True
    )
    off = add_agent(db, "oc-off", "opencode", endpoint="http://127.0.0.1:9/", status="inactive")

    Health.healthy = False
    for _ in range(2):  # two failures in a row make an agent unhealthy
        jobs.agent_health(heartbeat_timeout_s=120, failures_before_unhealthy=2)
    db.expire_all()
    assert db.get(Agent, down.id).status is AgentStatus.UNHEALTHY
    assert db.get(Agent, down.id).health_reason == "server unreachable (cannot connect)"
    assert "unhealthy" in db.get(Agent, flaky.id).health_reason
    assert db.get(Agent, silent.id).status is AgentStatus.UNHEALTHY
    assert db.get(Agent, silent.id).health_reason.startswith("no heartbeat for")
    assert db.get(Agent, fresh.id).status is AgentStatus.ACTIVE
    assert db.get(Agent, parked.id).status is AgentStatus.ACTIVE
    assert db.get(Agent, off.id).status is AgentStatus.INACTIVE
    assert {args[0] for _, args in fanned_out} == {down.id, flaky.id, silent.id, fresh.id}

    # A duplicated delivery of one check does not count the failure twice.
    name, args = fanned_out[-1]
    failures = db.get(Agent, args[0]).consecutive_failures
    jobs.check_agent(*args)
    db.expire_all()
    assert db.get(Agent, args[0]).consecutive_failures == failures

    # The server answers again and the silent agent beats: both are active at the next run.
    Health.healthy = True
    db.get(Agent, silent.id).last_heartbeat_at = utcnow()
    db.commit()
    jobs.agent_health(heartbeat_timeout_s=120, failures_before_unhealthy=2)
    db.expire_all()
    recovered = db.get(Agent, flaky.id)
    assert (recovered.status, recovered.health_reason) == (AgentStatus.ACTIVE, None)
    assert recovered.last_heartbeat_at is not None and recovered.consecutive_failures == 0
    assert db.get(Agent, silent.id).status is AgentStatus.ACTIVE
    assert db.get(Agent, down.id).status is AgentStatus.UNHEALTHY
    run = last_run(db, "maintenance.agent_health")
    assert run.outcome == "ok" and run.details["agents"] == 4


def make_finished(db, status, finished_ago, checkpoints=(), events=2, workdir=None):
    session = Session(title=f"s-{status}", prompt="p", status=status, workdir=workdir,
                      finished_at=utcnow() - finished_ago if finished_ago else None)  # fmt: skip
    tasks = {key: SessionTask(key=key, title=key, status=TaskStatus.COMPLETED) for key in "ab"}
    session.tasks = list(tasks.values())
    db.add(session)
    db.flush()
    for sequence, key in enumerate(checkpoints, start=1):
        db.add(Checkpoint(session_id=session.id, task_id=tasks[key].id, sequence=sequence))
    for index in range(events):
        record_event(db, session.id, f"e{index}")
    db.commit()
    return session.id


def counts(db, session_id):
    db.expire_all()
    return (
        db.scalar(select(func.count()).where(SessionEvent.session_id == session_id)),
        sorted(db.scalars(select(Checkpoint.sequence).where(Checkpoint.session_id == session_id))),
    )


def test_retention_prunes_old_finished_sessions_only(db, fanned_out):
    old_done = make_finished(db, SessionStatus.COMPLETED, timedelta(days=40), "aab")
    old_failed = make_finished(db, SessionStatus.FAILED, timedelta(days=40), "aab")
    recent = make_finished(db, SessionStatus.COMPLETED, timedelta(days=2), "aab")
    running = make_finished(db, SessionStatus.RUNNING, None, "aab")
    for job, age in (("x.job", 30), ("x.job", 20), ("x.job", 0), ("y.job", 60)):
        db.add(BeatJobRun(job=job, outcome="ok", started_at=utcnow() - timedelta(days=age)))
    db.commit()

    jobs.retention(older_than_days=30, job_runs_days=14)

    assert counts(db, old_done) == (0, [3])  # nothing can run again: the final checkpoint stays
    assert counts(db, old_failed) == (0, [2, 3])  # retry resumes: each task's newest stays
    assert counts(db, recent) == (2, [1, 2, 3])
    assert counts(db, running) == (2, [1, 2, 3])
    kept = db.execute(select(BeatJobRun.job, BeatJobRun.started_at).where(
        BeatJobRun.job.in_(["x.job", "y.job"]))).all()  # fmt: skip
    assert sorted(job for job, _ in kept) == ["x.job", "y.job"]  # y's newest run is kept
    details = last_run(db, "maintenance.retention").details
    assert details.pop("duration_s") >= 0  # recorded, whatever it took
    assert details == {"sessions": 2, "job_runs_deleted": 2}

    fanned_out.clear()
    jobs.retention(older_than_days=30, job_runs_days=14)
    assert fanned_out == []  # nothing left to prune
    assert jobs.prune_session(old_done, 30) == {"events": 0, "checkpoints": 0}


def test_worktree_cleanup_removes_branches_of_finished_sessions_after_their_grace(
    db, fanned_out, tmp_path
):
    repo = ensure_repository(tmp_path / "repo")
    done = make_finished(db, SessionStatus.COMPLETED, timedelta(hours=2), workdir=str(repo))
    failed = make_finished(db, SessionStatus.FAILED, timedelta(hours=2), workdir=str(repo))
    fresh = make_finished(db, SessionStatus.COMPLETED, timedelta(minutes=5), workdir=str(repo))
    plain = make_finished(db, SessionStatus.CANCELLED, timedelta(hours=2),
                          workdir=str(tmp_path / "not-a-repo"))  # fmt: skip
    paths = {sid: create_worktree(repo, sid, "a") for sid in (done, failed, fresh)}

    jobs.worktree_cleanup(grace_s=3600, retryable_grace_s=86400)

    branches = git(repo, "branch", "--format=%(refname:short)").stdout.split()
    assert f"orch/{done}/a" not in branches and not paths[done].exists()
    assert f"orch/{failed}/a" in branches and paths[failed].exists()  # it may be retried
    assert f"orch/{fresh}/a" in branches and paths[fresh].exists()  # still in its grace period
    assert sorted(args[0] for _, args in fanned_out) == sorted([done, plain])
    cleaned = SessionEvent.session_id == done, SessionEvent.type == "workspace.cleaned"
    event = db.scalars(select(SessionEvent).where(*cleaned)).one()
    assert event.data == {"branches": [f"orch/{done}/a"]}

    fanned_out.clear()
    jobs.worktree_cleanup(grace_s=3600, retryable_grace_s=86400)
    assert fanned_out == []
    assert jobs.clean_worktrees(done, 3600, 86400) is None  # a duplicate changes nothing


def test_deadlock_job_breaks_a_wait_for_cycle(redis_client, fanned_out, db):
    one = FairSemaphore(redis_client, "agent-1", lease_ttl=5.0)
    two = FairSemaphore(redis_client, "agent-2", lease_ttl=5.0)
    held_one = one.acquire(owner="job-x")
    held_two = two.acquire(owner="job-y")
    x_waits, y_waits = Waiter(two, "job-x", timeout=10), Waiter(one, "job-y", timeout=10)
    x_waits.start()
    y_waits.start()
    wait_until(lambda: find_wait_for_cycles(redis_client, "orch"), 10, message="a cycle")
    before = db.scalar(select(func.coalesce(func.max(BeatJobRun.id), 0)))

    jobs.deadlocks(namespace="orch")

    assert fanned_out == [("maintenance.break_deadlock", ("job-y", "agent-2", "orch"))]
    assert held_two.lost.wait(5)  # job-y gave up agent-2, so job-x gets it
    x_waits.finish()
    held_one.release()
    y_waits.finish()
    assert find_wait_for_cycles(redis_client, "orch") == []
    assert jobs.break_deadlock("job-y", "agent-2", "orch") == 0  # no cycle any more: no-op
    # Our run, not the last one: the e2e tests' beat may have run the job since.
    ours = db.scalars(
        select(BeatJobRun)
        .where(BeatJobRun.job == "maintenance.deadlocks", BeatJobRun.id > before)
        .order_by(BeatJobRun.id)
    ).first()
    assert ours.details["cycles"] == 1


def test_runs_are_recorded_and_listed_over_the_api(client, db, fanned_out):
    jobs.deadlocks(namespace="nothing-here")

    @beat_jobs.beat_job("test.failing")
    def failing():
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        failing()
    by_job = {job["job"]: job for job in client.get("/api/v1/maintenance/jobs").json}
    assert by_job["maintenance.deadlocks"]["last_run"]["outcome"] == "ok"
    assert by_job["maintenance.deadlocks"]["entry"] == "deadlock-detection"
    assert by_job["maintenance.deadlocks"]["schedule_seconds"] > 0
    assert by_job["maintenance.deadlocks"]["last_success_at"]
    assert by_job["test.failing"]["last_run"]["outcome"] == "failed"
    assert "disk full" in by_job["test.failing"]["last_run"]["details"]["error"]
    assert {"recovery.watchdog", "maintenance.agent_health", "maintenance.retention",
            "maintenance.worktree_cleanup"} <= set(by_job)  # fmt: skip
    runs = client.get("/api/v1/maintenance/jobs/test.failing/runs").json
    assert [run["outcome"] for run in runs] == ["failed"]
    assert client.get("/api/v1/maintenance/jobs/nope/runs").status_code == 404
    metrics = client.get("/metrics").text
    assert 'orchestrator_beat_job_runs_total{job="test.failing",outcome="failed"}' in metrics
