"""Benchmark of many worker hosts: scaling from one host to three, losing a host mid-run, and
an integration merge of branches pushed from different hosts.

Each host is a network namespace with its own Celery worker (same concurrency on each) and
its own WORKSPACE_ROOT; the repository is served by `git daemon` from the server host (the
root namespace, which also runs PostgreSQL, Redis, the API and beat): tests/hosts_lab.py.
Needs root. Run `python bench/hosts.py`; it prints only `name: value` lines:

- scaling_3_over_1: makespan of a 60-task wide DAG of I/O-bound tasks (each sleeps, then its
  branch is pushed) on one host, over the same DAG on three hosts (ideal 3; target >= 2.4);
- host_loss_sessions_completed: k/n sessions completed after one host's processes were
  SIGKILLed and its disk deleted mid-run; host_loss_completed_twice: tasks recorded completed
  more than once (must be 0);
- cross_host_integration: 1 when parallel tasks ran on different hosts and the integration
  branch holds every task's commit.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.hosts_lab import HostsLab, netns_problem, register_shell_agent, wide_dag  # noqa: E402

CONCURRENCY = 10  # worker threads per host: 60 tasks are 6 waves on one host, 2 on three
WIDTH, SLEEP_S = 60, 6.0  # long enough that the per-task CPU (about 0.2 s) is not the limit
LOSS_SESSIONS, LOSS_WIDTH, LOSS_SLEEP_S = 3, 12, 3.0


def report(name: str, value) -> None:
    print(f"{name}: {value:.3f}" if isinstance(value, float) else f"{name}: {value}", flush=True)


def makespan(lab: HostsLab, title: str) -> float:
    """Seconds from the first task's start to the last one's finish, of one wide DAG."""
    session = lab.wait_finished(lab.submit(title, wide_dag(WIDTH, SLEEP_S, integrate=False)), 900)
    if session["status"] != "completed":
        raise SystemExit(f"{title} ended {session['status']}")
    from datetime import datetime

    starts = [datetime.fromisoformat(t["started_at"]) for t in session["tasks"]]
    ends = [datetime.fromisoformat(t["finished_at"]) for t in session["tasks"]]
    return (max(ends) - min(starts)).total_seconds()


def cross_host_integration(lab: HostsLab, session: dict) -> int:
    """1 if the tasks ran on two hosts or more and the integration branch holds them all."""
    tasks = [task for task in session["tasks"] if task["key"] != "merge"]
    if session["status"] != "completed" or len({lab.host_of(t["worker"]) for t in tasks}) < 2:
        return 0
    integration = f"orch/{session['id']}/integration"
    heads = [lab.git("rev-parse", task["branch"]).strip() for task in tasks]
    return int(all(lab.is_ancestor(head, integration) for head in heads))


def host_loss(lab: HostsLab) -> tuple[int, int]:
    """(sessions completed, tasks completed twice) when one host is lost mid-run."""
    dag = wide_dag(LOSS_WIDTH, LOSS_SLEEP_S)
    ids = [lab.submit(f"loss-{i}", dag) for i in range(LOSS_SESSIONS)]
    deadline = time.monotonic() + 120
    victim = None
    while victim is None and time.monotonic() < deadline:
        for session_id in ids:
            tasks = lab.call("GET", f"/sessions/{session_id}").json()["tasks"]
            busy = [lab.host_of(t["worker"]) for t in tasks if t["status"] == "in_progress"]
            victim = next((host for host in busy if host is not None), None)
            if victim is not None:
                break
        time.sleep(0.2)
    if victim is None:
        raise SystemExit("no task ever ran on a host")
    lab.kill_host(victim)
    sessions = [lab.wait_finished(session_id, 600) for session_id in ids]
    completed = sum(session["status"] == "completed" for session in sessions)
    twice = sum(count > 1 for sid in ids for count in lab.completions(sid).values())
    lab.start_worker(victim)
    return completed, twice


def main() -> None:
    problem = netns_problem()
    if problem:
        raise SystemExit(f"bench/hosts.py cannot run here: {problem}")
    home = Path(tempfile.mkdtemp(prefix="orch-bench-hosts-"))
    with HostsLab(home, hosts=3, concurrency=CONCURRENCY) as lab:
        # Room for every task at once: the hosts' threads, not the agent, set the concurrency.
        register_shell_agent(lab, capacity=WIDTH)
        lab.kill_host(1)
        lab.kill_host(2)
        one = makespan(lab, "one-host")
        starting = [lab.start_worker(index, wait=False) for index in (1, 2)]
        for ready in starting:
            ready()
        three = makespan(lab, "three-hosts")
        report("makespan_s_1_host", one)
        report("makespan_s_3_hosts", three)
        report("scaling_3_over_1", one / three)
        merged = lab.wait_finished(lab.submit("cross-host", wide_dag(6, 1.0)), 300)
        report("cross_host_integration", cross_host_integration(lab, merged))
        completed, twice = host_loss(lab)
        report("host_loss_sessions_completed", f"{completed}/{LOSS_SESSIONS}")
        report("host_loss_completed_twice", twice)


if __name__ == "__main__":
    main()
