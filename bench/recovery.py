"""Time to recover from a worker killed with SIGKILL in the middle of a task.

Two workers and a beat run with a 5 s task lease (heartbeat 1 s, reconciler every second). A
session of three chained tasks starts; while the middle one runs, the worker running it is
killed. Printed: `recovery_s` (kill to the task running again on the surviving worker), the
session's completion time after the kill, and the lease time-out the target is measured against
(recovery within lease + 5 s, never Redis's visibility timeout).
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime

import requests
from _harness import ROOT, Processes, auth_headers, register_shell_agent, services, wait_session

LEASE_SECONDS = 5


def task(api: str, session_id: str, key: str) -> dict:
    body = requests.get(f"{api}/api/v1/sessions/{session_id}", headers=auth_headers(),
                        timeout=10).json()  # fmt: skip
    return {t["key"]: t for t in body["tasks"]}[key]


def main() -> None:
    with services() as (database_url, redis_url, home):
        env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
               "WORKSPACE_ROOT": str(home / "work"), "PYTHONPATH": str(ROOT),
               "TASK_LEASE_SECONDS": str(LEASE_SECONDS), "TASK_HEARTBEAT_SECONDS": "1",
               "RECONCILE_INTERVAL_SECONDS": "1", "DISPATCH_GRACE_SECONDS": "3"}  # fmt: skip
        processes = Processes(env, home)
        try:
            first = processes.worker("tasks.worker", 4)
            second = processes.worker("tasks.worker", 4)
            processes.start("beat", [sys.executable, "-m", "celery", "-A", "tasks.worker", "beat",
                                     "-s", str(home / "beat-schedule")])  # fmt: skip
            api = processes.api()
            register_shell_agent(api, capacity=4)
            body = {"title": "recovery", "prompt": "bench", "dag": {"tasks": [
                {"key": "a", "command": "true"},
                {"key": "b", "command": "sleep 3", "depends_on": ["a"]},
                {"key": "c", "command": "true", "depends_on": ["b"]}]}}  # fmt: skip
            response = requests.post(f"{api}/api/v1/sessions", json=body, headers=auth_headers(),
                                     timeout=30)  # fmt: skip
            session_id = response.json()["id"]
            while task(api, session_id, "b")["status"] != "in_progress":
                time.sleep(0.05)
            running_on = task(api, session_id, "b")["started_at"]
            holder = task(api, session_id, "b")["worker"] or ""
            victim = first if holder.endswith(f":{first.pid}") else second
            victim.kill()
            killed_at = time.time()
            while True:
                current = task(api, session_id, "b")
                if current["started_at"] != running_on and current["status"] != "pending":
                    break
                time.sleep(0.05)
            restarted = datetime.fromisoformat(current["started_at"]).timestamp()
            session = wait_session(api, session_id, timeout=120)
            finished = datetime.fromisoformat(session["finished_at"]).timestamp()
        finally:
            processes.stop()
    print(f"lease_timeout_s: {LEASE_SECONDS}")
    print(f"recovery_s: {restarted - killed_at:.2f}")
    print(f"completion_after_kill_s: {finished - killed_at:.2f}")
    print(f"session_status_completed: {int(session['status'] == 'completed')}")


if __name__ == "__main__":
    main()
