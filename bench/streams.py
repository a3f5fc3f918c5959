"""Open event streams against the API's latency: `STREAMS` SSE streams stay open (10 running
sessions, a token per 20 streams, the default STREAMS_PER_TOKEN) while events are appended at
`EVENTS_PER_SECOND` and a probe times `GET /health/live` on a new connection each time.

The API runs as the Procfile runs it (gunicorn, 2 gevent workers). The same code under the
process model it had before (2 gthread workers x 4 threads, where each stream held a thread) is
measured too, with a short timeout: there the probe waits behind the streams.
"""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time
from urllib.parse import urlsplit

import requests
from _harness import Processes, auth_headers, services

STREAMS = int(os.environ.get("BENCH_STREAMS", "200"))
SESSIONS = 10
PER_TOKEN = 20
EVENTS_PER_SECOND = float(os.environ.get("BENCH_STREAM_EVENTS_PER_SECOND", "10"))
SECONDS = float(os.environ.get("BENCH_STREAM_SECONDS", "15"))
PROBES = 2  # probing threads
OLD_SECONDS, OLD_TIMEOUT = 5.0, 2.0
# Sessions that stay running: a command no worker runs (none is started).
SESSION = {"title": "streamed", "prompt": "p", "dag": {"tasks": [{"key": "a", "command": "true"}]}}


def make_tokens(api: str, count: int) -> list[str]:
    tokens = []
    for index in range(count):
        response = requests.post(f"{api}/api/v1/tokens", headers=auth_headers(), timeout=30,
                                 json={"name": f"stream-{index}", "scopes": ["read"]})  # fmt: skip
        response.raise_for_status()
        tokens.append(response.json()["token"])
    return tokens


def request_stream(api: str, session_id: str, token: str) -> socket.socket:
    """Send an SSE request on a raw socket (the answer is read by `await_streams`)."""
    url = urlsplit(api)
    sock = socket.create_connection((url.hostname, url.port), timeout=30)
    sock.sendall(
        f"GET /api/v1/sessions/{session_id}/events HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Accept: text/event-stream\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    return sock


def await_streams(sockets: list[socket.socket], deadline: float) -> dict:
    """Wait until `deadline` for each stream's headers and first line; count the open ones."""
    received: dict[socket.socket, bytes] = {}
    opened = 0
    for sock in sockets:
        head = b""
        try:
            while b"retry:" not in head:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                if not chunk:
                    break
                head += chunk
        except TimeoutError:
            pass
        if b"retry:" in head and head.startswith(b"HTTP/1.1 200"):
            opened += 1
        sock.setblocking(False)
        received[sock] = head
    return {"opened": opened, "received": received}


def count_ticks(received: dict[socket.socket, bytes]) -> int:
    """Read what the streams sent since; return how many `bench.tick` events they carried."""
    for sock in received:
        while True:
            try:
                chunk = sock.recv(1 << 20)
            except BlockingIOError:
                break
            if not chunk:
                break
            received[sock] += chunk
    return sum(data.count(b"event: bench.tick\n") for data in received.values())


def append_events(database_url: str, session_ids: list[str], stop: threading.Event) -> int:
    """Append events to the sessions, round robin, at EVENTS_PER_SECOND; return the count."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session as DbSession

    from app.config import _normalize_database_url
    from app.services.events import record_event

    engine = create_engine(_normalize_database_url(database_url))
    count, started = 0, time.monotonic()
    while not stop.is_set():
        with DbSession(engine) as db, db.begin():
            record_event(db, session_ids[count % len(session_ids)], "bench.tick", n=count)
        count += 1
        time.sleep(max(0.0, started + count / EVENTS_PER_SECOND - time.monotonic()))
    engine.dispose()
    return count


def probe(api: str, seconds: float, timeout: float) -> tuple[list[float], int]:
    """Time GET /health/live from PROBES threads, a new connection per request."""
    latencies, failures, lock = [], [0], threading.Lock()
    deadline = time.monotonic() + seconds

    def run() -> None:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                ok = requests.get(f"{api}/health/live", timeout=timeout).status_code == 200
            except requests.RequestException:
                ok = False
            elapsed = time.perf_counter() - started
            with lock:
                if ok:
                    latencies.append(elapsed)
                else:
                    failures[0] += 1
            time.sleep(0.01)

    threads = [threading.Thread(target=run) for _ in range(PROBES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, failures[0]


def p99_ms(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100)[98] * 1000 if len(latencies) > 1 else float("nan")


def measure(api: str, database_url: str, seconds: float, timeout: float,
            open_timeout: float) -> dict:  # fmt: skip
    """Open the streams, append events and probe; then close the streams."""
    headers = auth_headers()
    session_ids = []
    for _ in range(SESSIONS):
        created = requests.post(f"{api}/api/v1/sessions", json=SESSION, headers=headers,
                                timeout=30)  # fmt: skip
        created.raise_for_status()
        session_ids.append(created.json()["id"])
    tokens = make_tokens(api, -(-STREAMS // PER_TOKEN))
    started = time.monotonic()
    sockets = [request_stream(api, session_ids[index % SESSIONS], tokens[index // PER_TOKEN])
               for index in range(STREAMS)]  # fmt: skip
    streams = await_streams(sockets, time.monotonic() + open_timeout)
    opened_s = time.monotonic() - started
    stop = threading.Event()
    appended = []
    writer = threading.Thread(target=lambda: appended.append(
        append_events(database_url, session_ids, stop)))  # fmt: skip
    writer.start()
    latencies, failures = probe(api, seconds, timeout)
    stop.set()
    writer.join()
    time.sleep(1.5)  # the last events reach the streams (the watcher polls every 0.5 s)
    delivered = count_ticks(streams["received"])
    for sock in sockets:
        sock.close()
    return {"open": streams["opened"], "opened_s": opened_s, "latencies": latencies,
            "failures": failures, "appended": appended[0], "delivered": delivered}  # fmt: skip


def main() -> None:
    with services() as (database_url, redis_url, home):
        env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
               "WORKSPACE_ROOT": str(home / "work")}  # fmt: skip
        processes = Processes(env, home)
        try:
            new = measure(processes.api(), database_url, SECONDS, timeout=10, open_timeout=60)
        finally:
            processes.stop()
        processes = Processes(env, home)
        try:
            old = measure(processes.api("gthread"), database_url, OLD_SECONDS, OLD_TIMEOUT,
                          open_timeout=OLD_TIMEOUT)  # fmt: skip
        finally:
            processes.stop()
    print(f"open_streams: {new['open']}")
    print(f"streams_open_s: {new['opened_s']:.2f}")
    print(f"health_live_requests: {len(new['latencies'])}")
    print(f"health_live_failures: {new['failures']}")
    print(f"health_live_p50_ms: {statistics.median(new['latencies']) * 1000:.2f}")
    print(f"health_live_p99_ms: {p99_ms(new['latencies']):.2f}")
    print(f"events_appended: {new['appended']}")
    print(f"events_delivered: {new['delivered']}")
    print(f"events_expected: {new['appended'] * STREAMS // SESSIONS}")
    print(f"old_design_open_streams: {old['open']}")
    print(f"old_design_health_live_requests: {len(old['latencies'])}")
    print(f"old_design_health_live_failures: {old['failures']} (timeout {OLD_TIMEOUT:g} s)")
    print(f"old_design_health_live_p99_ms: {p99_ms(old['latencies']):.2f}")


if __name__ == "__main__":
    main()
