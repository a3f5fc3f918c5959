"""Show a session's progress in a terminal: a bar for the session and one per task, redrawn in
place on a terminal; in a log (not a terminal) a new block only when a status changes."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

import requests

FINISHED = {"completed", "partially_completed", "failed", "timeout", "stopped", "cancelled"}
DONE = {"completed", "skipped", "failed", "cancelled"}
SYMBOLS = {
    "pending": "·", "ready": "…", "assigned": "…", "in_progress": "▶", "blocked": "‖",
    "paused": "‖", "completed": "✔", "failed": "✘", "cancelled": "✘", "skipped": "↷",
}  # fmt: skip
# How far along the fixed stages a task is, for its bar: queued, claimed, running, done.
STAGE = {"pending": 0, "blocked": 0, "paused": 0, "ready": 1, "assigned": 2, "in_progress": 3}
TASK_BAR = 10


def bar(done: int, total: int, width: int = 24) -> str:
    """A text progress bar."""
    filled = int(width * done / total) if total else width
    return "[" + "#" * filled + "-" * (width - filled) + f"] {done}/{total}"


def _seconds_since(stamp: str | None, until: str | None = None) -> float | None:
    if not stamp:
        return None
    start = datetime.fromisoformat(stamp)
    end = datetime.fromisoformat(until) if until else datetime.now(UTC)
    return max(0.0, (end - start).total_seconds())


def task_bar(task: dict, live: bool, tick: int = 0) -> str:
    """A task's own bar: full when done, a moving block while it runs (on a terminal)."""
    status = task["status"]
    if status in DONE:
        fill = "#" if status == "completed" else ("x" if status in ("failed", "cancelled") else "~")
        return "[" + fill * TASK_BAR + "]"
    filled = STAGE.get(status, 0) * TASK_BAR // 5
    inner = "#" * filled + "-" * (TASK_BAR - filled)
    if live and status == "in_progress":
        spot = filled + tick % (TASK_BAR - filled)
        inner = inner[:spot] + ">" + inner[spot + 1 :]
    return "[" + inner + "]"


def render(session: dict, live: bool = False, tick: int = 0) -> list[str]:
    """The lines that describe a session's state (with timers and motion when `live`)."""
    tasks = session["tasks"]
    done = sum(task["status"] in DONE for task in tasks)
    head = f"{session['title']}  {session['status'].upper()}  {bar(done, len(tasks))}"
    lines = [head]
    width = max((len(task["key"]) for task in tasks), default=4)
    for task in tasks:
        detail = ""
        if task["status"] == "in_progress":
            detail = f"attempt {task['attempt']}"
        elif task["status"] == "completed" and task.get("result"):
            detail = (task["result"].get("summary") or "")[:60]
        elif task.get("error"):
            detail = task["error"][:60]
        elapsed = _seconds_since(task.get("started_at"), task.get("finished_at"))
        shown = elapsed is not None and (live or task.get("finished_at"))
        timer = f"{elapsed:6.1f}s" if shown else " " * 7
        symbol = SYMBOLS.get(task["status"], "?")
        lines.append(f"  {symbol} {task['key']:<{width}} {task_bar(task, live, tick)} "
                     f"{task['status']:<11} {timer}  {detail}".rstrip())  # fmt: skip
    return lines


def watch(api_url: str, session_id: str, headers: dict | None = None, interval: float = 0.5,
          stream=sys.stdout) -> dict:  # fmt: skip
    """Poll the API and redraw progress until the session finishes; return its last state.

    Raises requests.HTTPError for an error answer and requests.RequestException when the API
    cannot be reached.
    """
    live = stream.isatty()
    previous: list[str] = []
    tick = 0
    while True:
        response = requests.get(
            f"{api_url}/api/v1/sessions/{session_id}", headers=headers, timeout=10
        )
        response.raise_for_status()
        session = response.json()
        lines = render(session, live, tick)
        if lines != previous:
            if live and previous:
                stream.write(f"\x1b[{len(previous)}F\x1b[J")
            elif previous:
                stream.write("\n")
            stream.write("\n".join(lines) + "\n")
            stream.flush()
            previous = lines
        if session["status"] in FINISHED:
            return session
        tick += 1
        time.sleep(interval)
