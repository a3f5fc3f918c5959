"""API throughput with gunicorn as the Procfile and the Docker image run it (2 workers x 4
threads, a Prometheus multiprocess directory) and a loopback load generator: requests per second
and p50/p99 of GET /health/live, GET /api/v1/sessions/{id} and POST /api/v1/sessions, all but the
probe with a bearer token. Uses `wrk` when installed (`apt-get install wrk`), else a keep-alive
thread pool, which competes with the server for the CPU. Health and GET session are measured in
three interleaved rounds; the figures are medians and the ratio is the median of the rounds'.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time

import requests
from _harness import Processes, auth_headers, register_shell_agent, services

SECONDS = float(os.environ.get("BENCH_API_SECONDS", "8"))
CONNECTIONS = int(os.environ.get("BENCH_API_CONNECTIONS", "8"))
ROUNDS = 3  # interleaved health / GET session rounds; medians are reported
SESSION = {"title": "bench", "prompt": "p", "dag": {"tasks": [{"key": "a", "command": "true"}]}}
POST_LUA = """wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
"""


def _wrk_ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def with_wrk(url: str, headers: dict, body: dict | None = None) -> dict:
    """Run wrk against one URL; return rps, p50_ms, p99_ms."""
    command = ["wrk", "-t", "2", "-c", str(CONNECTIONS), "-d", f"{SECONDS:.0f}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    script = None
    if body is not None:
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        script.write(POST_LUA.format(body=json.dumps(body)))
        script.close()
        command += ["-s", script.name]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True,
                            timeout=SECONDS + 60).stdout  # fmt: skip
    if script is not None:
        os.unlink(script.name)
    percentiles = re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
    latency = {percent: _wrk_ms(value, unit) for percent, value, unit in percentiles}
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        raise RuntimeError(f"{non_2xx.group(1)} error answers from {url}:\n{output}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    return {"rps": rps, "p50_ms": latency["50"], "p99_ms": latency["99"]}


def with_threads(url: str, headers: dict, body: dict | None = None) -> dict:
    """A thread per connection, each with a keep-alive session, for SECONDS; same figures."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + SECONDS

    def client() -> None:
        http = requests.Session()
        mine = []
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = http.post(url, json=body, headers=headers) if body else http.get(
                url, headers=headers)  # fmt: skip
            mine.append(time.perf_counter() - started)
            if response.status_code >= 300:
                errors.append(f"{response.status_code} {response.text[:200]}")
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(CONNECTIONS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} error answers from {url}: {errors[0]}")
    cuts = statistics.quantiles(latencies, n=100)
    return {"rps": len(latencies) / (time.monotonic() - started),
            "p50_ms": cuts[49] * 1000, "p99_ms": cuts[98] * 1000}  # fmt: skip


def median_figures(runs: list[dict]) -> dict:
    """The median of each figure over several runs of one endpoint."""
    return {name: statistics.median(run[name] for run in runs) for name in runs[0]}


def main() -> None:
    generator = "wrk" if shutil.which("wrk") else "python-threads"
    load = with_wrk if generator == "wrk" else with_threads
    with services() as (database_url, redis_url, home):
        metrics = home / "metrics"
        metrics.mkdir()
        env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
               "WORKSPACE_ROOT": str(home / "work"),
               "PROMETHEUS_MULTIPROC_DIR": str(metrics)}  # fmt: skip
        processes = Processes(env, home)
        try:
            api = processes.api()
            register_shell_agent(api, capacity=1)
            headers = auth_headers()
            created = requests.post(f"{api}/api/v1/sessions", json=SESSION, headers=headers,
                                    timeout=30)  # fmt: skip
            created.raise_for_status()
            session_url = f"{api}/api/v1/sessions/{created.json()['id']}"
            load(f"{api}/health/live", {})  # warm-up: every worker thread has its connections
            load(session_url, headers)
            pairs = [  # interleaved rounds, so load from elsewhere hits both alike
                (load(f"{api}/health/live", {}), load(session_url, headers)) for _ in range(ROUNDS)
            ]
            results = {
                "health_live": median_figures([health for health, _ in pairs]),
                "get_session": median_figures([get for _, get in pairs]),
                "create_session": load(f"{api}/api/v1/sessions", headers, SESSION),
            }
            ratio = statistics.median(get["rps"] / health["rps"] for health, get in pairs)
        finally:
            processes.stop()
    print(f"load_generator: {generator}")
    print(f"connections: {CONNECTIONS}")
    for name, figures in results.items():
        print(f"{name}_rps: {figures['rps']:.0f}")
        print(f"{name}_p50_ms: {figures['p50_ms']:.2f}")
        print(f"{name}_p99_ms: {figures['p99_ms']:.2f}")
    print(f"get_session_rps_ratio: {ratio:.2f}")
    print(f"create_session_p99_ms: {results['create_session']['p99_ms']:.2f}")


if __name__ == "__main__":
    main()
