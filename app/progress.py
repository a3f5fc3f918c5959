"""Show a session's progress in a terminal: one line per task, redrawn as statuses change."""

from __future__ import annotations

import sys
import time

import requests

FINISHED = {"completed", "partially_completed", "failed", "timeout", "stopped", "cancelled"}
SYMBOLS = {
    "pending": "·", "ready": "…", "assigned": "…", "in_progress": "▶", "blocked": "‖",
    "paused": "‖", "completed": "✔", "failed": "✘", "cancelled": "✘", "skipped": "↷",
}  # fmt: skip


def bar(done: int, total: int, width: int = 24) -> str:
    """A text progress bar."""
    filled = int(width * done / total) if total else width
    return "[" + "#" * filled + "-" * (width - filled) + f"] {done}/{total}"


def render(session: dict) -> list[str]:
    """The lines that describe a session's state."""
    tasks = session["tasks"]
    done = sum(task["status"] in ("completed", "skipped", "failed") for task in tasks)
    lines = [f"{session['title']}  {session['status'].upper()}  {bar(done, len(tasks))}"]
    width = max(len(task["key"]) for task in tasks)
    for task in tasks:
        detail = ""
        if task["status"] == "in_progress":
            detail = f"attempt {task['attempt']}"
        elif task["status"] == "completed" and task.get("result"):
            detail = (task["result"].get("summary") or "")[:60]
        elif task.get("error"):
            detail = task["error"][:60]
        symbol = SYMBOLS.get(task["status"], "?")
        lines.append(f"  {symbol} {task['key']:<{width}}  {task['status']:<11} {detail}")
    return lines


def watch(api_url: str, session_id: str, headers: dict | None = None, interval: float = 0.5,
          stream=sys.stdout) -> dict:  # fmt: skip
    """Poll the API and redraw progress until the session finishes; return its last state."""
    tty = stream.isatty()
    previous: list[str] = []
    while True:
        response = requests.get(
            f"{api_url}/api/v1/sessions/{session_id}", headers=headers, timeout=10
        )
        response.raise_for_status()
        session = response.json()
        lines = render(session)
        if lines != previous:
            if tty and previous:
                stream.write(f"\x1b[{len(previous)}F\x1b[J")
            elif previous:
                stream.write("\n")
            stream.write("\n".join(lines) + "\n")
            stream.flush()
            previous = lines
        if session["status"] in FINISHED:
            return session
        time.sleep(interval)
