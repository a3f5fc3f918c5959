"""Dashboard latency: from a task's `finished_at` (set by the worker, server clock) to the moment
the session page in a real headless chromium shows its node as completed (`data-status`
changed, seen by a MutationObserver; `performance.timeOrigin + performance.now()`, the same
machine's clock). The page follows the session over its one event stream, as a user's would.

Sessions are chains of short shell tasks, so completions come one at a time; the first task
waits long enough for the page to open and start observing. Prints `ui_update_median_ms`
(target < 100), `ui_update_max_ms` (target < 250) and the number of samples.
`--screenshot PATH` also saves the session page as PNG (the README's screenshot).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import requests
from _harness import ROOT, Processes, auth_headers, register_shell_agent, services, wait_session

sys.path.insert(0, str(ROOT))

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

SESSIONS = int(os.environ.get("BENCH_UI_SESSIONS", "3"))
CHAIN = int(os.environ.get("BENCH_UI_CHAIN", "15"))
STEP_SECONDS = float(os.environ.get("BENCH_UI_STEP_SECONDS", "0.15"))
# Where the time goes: finished_at -> the event's created_at (same transaction, before its
# commit), and created_at -> the event reaching the page (commit, watcher tick, SSE).
PARTS: dict[str, list[float]] = {"event_written": [], "event_delivered": []}
OBSERVER = """() => {
  window.__completedAt = {};
  const seen = window.__completedAt;
  new MutationObserver(records => {
    const now = performance.timeOrigin + performance.now();
    for (const r of records) {
      const key = r.target.dataset.taskKey;
      if (r.target.dataset.status === "completed" && !(key in seen)) { seen[key] = now; }
    }
  }).observe(document.getElementById("task-list"), {attributes: true, subtree: true,
                                                     attributeFilter: ["data-status"]});
  window.__eventAt = {};  // when each task.completed event reached the page, and its created_at
  window.orchSession.source.addEventListener("message", e => {
    const ev = JSON.parse(e.data);
    if (ev.type === "task.completed") {
      window.__eventAt[ev.task_id] = [performance.timeOrigin + performance.now(), ev.created_at];
    }
  });
  return Object.fromEntries([...document.querySelectorAll("tr.task-node")]
    .map(r => [r.dataset.taskKey, r.dataset.status]));
}"""


def chain_session(index: int) -> dict:
    tasks = [{"key": "t00", "command": "sleep 3"}]  # time for the page to open and observe
    for step in range(1, CHAIN):
        tasks.append({"key": f"t{step:02d}", "command": f"sleep {STEP_SECONDS}",
                      "depends_on": [f"t{step - 1:02d}"]})  # fmt: skip
    return {"title": f"ui latency {index}", "prompt": "p", "dag": {"tasks": tasks}}


def measure(context, api: str, index: int) -> list[float]:
    """Latencies (ms) of every task of one session that completed while its page observed."""
    created = requests.post(f"{api}/api/v1/sessions", json=chain_session(index),
                            headers=auth_headers(), timeout=30)  # fmt: skip
    created.raise_for_status()
    session_id = created.json()["id"]
    page = context.new_page()
    page.goto(f"{api}/ui/sessions/{session_id}")
    page.wait_for_selector("#stream-state:text('live')")
    before = page.evaluate(OBSERVER)
    final = wait_session(api, session_id, timeout=300, interval=0.2)
    pending = sum(status != "completed" for status in before.values())
    page.wait_for_function(f"Object.keys(window.__completedAt).length >= {pending}", timeout=30_000)
    seen = page.evaluate("window.__completedAt")
    arrivals = page.evaluate("window.__eventAt")
    page.close()
    latencies = []
    for task in final["tasks"]:
        if before.get(task["key"]) == "completed" or task["key"] not in seen:
            continue
        finished = datetime.fromisoformat(task["finished_at"]).timestamp() * 1000
        latencies.append(seen[task["key"]] - finished)
        if task["id"] in arrivals:
            arrived, created = arrivals[task["id"]]
            created = datetime.fromisoformat(created).timestamp() * 1000
            PARTS["event_written"].append(created - finished)
            PARTS["event_delivered"].append(arrived - created)
    return latencies


SHOWCASE = {
    "title": "Add OAuth login to the billing service", "prompt": "p", "tags": ["auth", "demo"],
    "dag": {"tasks": [
        {"key": "requirements", "command": "sleep 0.4; echo scopes: openid profile email"},
        {"key": "design", "command": "sleep 0.6; echo provider: oidc",
         "depends_on": ["requirements"]},
        {"key": "backend", "command": "sleep 1.2; echo 12 files changed", "depends_on": ["design"]},
        {"key": "frontend", "command": "sleep 0.9; echo login button added",
         "depends_on": ["design"]},
        {"key": "migration", "command": "sleep 0.5; echo users.oauth_subject added",
         "depends_on": ["design"]},
        {"key": "tests", "command": "sleep 0.8; echo 48 passed",
         "depends_on": ["backend", "frontend", "migration"]},
        {"key": "docs", "command": "sleep 0.3; echo README updated", "depends_on": ["backend"]},
        {"key": "deploy", "command": "sleep 0.4; echo deployed to staging",
         "depends_on": ["tests", "docs"]},
    ]},
}  # fmt: skip


def showcase(context, api: str, path: Path) -> None:
    """Run a small branching session to the end and save its page, one task selected."""
    created = requests.post(f"{api}/api/v1/sessions", json=SHOWCASE, headers=auth_headers(),
                            timeout=30)  # fmt: skip
    created.raise_for_status()
    page = context.new_page()
    page.goto(f"{api}/ui/sessions/{created.json()['id']}")
    wait_session(api, created.json()["id"], timeout=300, interval=0.2)
    page.wait_for_selector("#stream-state:text('finished')", timeout=30_000)
    page.get_by_role("button", name="tests", exact=True).click()
    page.screenshot(path=str(path), full_page=True)
    page.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshot", type=Path, help="save the session page as PNG here")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with services() as (database_url, redis_url, home):
        metrics = home / "metrics"
        metrics.mkdir()
        env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
               "WORKSPACE_ROOT": str(home / "work"), "PROMETHEUS_MULTIPROC_DIR": str(metrics),
               "SECRET_KEY": secrets.token_hex(32)}  # fmt: skip
        processes = Processes(env, home)
        manager = sync_playwright().start()
        profile = tempfile.mkdtemp(prefix="bench-ui-chromium-")
        try:
            api = processes.api()
            processes.worker("tasks.worker", concurrency=4)
            register_shell_agent(api, capacity=2)
            context = manager.chromium.launch_persistent_context(
                profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1400, "height": 1000},
            )  # fmt: skip
            login = context.new_page()
            login.goto(f"{api}/ui/login")
            login.get_by_label("API token").fill(os.environ["ORCH_TOKEN"])
            login.get_by_label("API token").press("Enter")
            login.wait_for_url(f"{api}/ui/")
            login.close()
            latencies: list[float] = []
            for index in range(SESSIONS):
                latencies += measure(context, api, index)
            if args.screenshot:
                showcase(context, api, args.screenshot)
            context.close()
        finally:
            manager.stop()
            processes.stop()
    print(f"ui_update_samples: {len(latencies)}")
    print(f"ui_update_median_ms: {statistics.median(latencies):.1f}")
    print(f"ui_update_p90_ms: {statistics.quantiles(latencies, n=10)[-1]:.1f}")
    print(f"ui_update_max_ms: {max(latencies):.1f}")
    print(f"ui_update_min_ms: {min(latencies):.1f}")
    for name, values in PARTS.items():
        if values:
            print(f"ui_{name}_median_ms: {statistics.median(values):.1f}")
            print(f"ui_{name}_max_ms: {max(values):.1f}")


if __name__ == "__main__":
    main()
