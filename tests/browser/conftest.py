"""Fixtures of the browser tests: Debian's chromium (installed when missing), driven by
playwright, against the Procfile's web process (gunicorn + gevent) on the test services.

Where chromium or playwright cannot be had, the browser tests skip saying why; with CI=true
they fail instead, since a CI run must run them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import requests

from app.standalone.servers import free_port
from tests.conftest import ROOT, wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def unavailable(reason: str):
    """Skip (or, under CI=true, fail) a browser test that cannot run here."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the browser tests must run in CI: {reason}")
    pytest.skip(reason)


def _apt_install_chromium() -> str | None:
    """Install Debian's chromium; None when done, else why not."""
    if os.geteuid() != 0:
        return "chromium is missing and installing it needs root (apt-get install -y chromium)"
    if shutil.which("apt-get") is None:
        return "chromium is missing and there is no apt-get to install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "chromium"]
    result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:  # the package lists may be missing or stale
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        return f"apt-get install chromium failed: {result.stderr.strip()[-300:]}"
    return None


def ensure_chromium() -> Path:
    """The chromium executable, installed with apt-get when missing (or the test is skipped)."""
    if not CHROMIUM.exists():
        problem = _apt_install_chromium()
        if problem or not CHROMIUM.exists():
            unavailable(problem or "apt-get installed chromium but /usr/bin/chromium is missing")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser_context():
    """One headless chromium per test module (a fresh user-data dir), driven by playwright."""
    executable = ensure_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[dev]')")
    profile = Path(tempfile.mkdtemp(prefix="ui-chromium-"))
    manager = sync_playwright().start()
    try:
        context = manager.chromium.launch_persistent_context(
            str(profile), executable_path=str(executable), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
            bypass_csp=True,  # playwright's wait_for_function evaluates strings in the page
        )  # fmt: skip
    except Exception as error:  # a chromium that does not start is an environment problem
        manager.stop()
        unavailable(f"chromium did not start: {error}")
    context.set_default_timeout(30_000)
    yield context
    context.close()
    manager.stop()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser_context, tmp_path):
    """A new tab with no cookies; a screenshot of it lands in the test's tmp_path at the end."""
    browser_context.clear_cookies()
    tab = browser_context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.js_errors = errors
    yield tab
    if not tab.is_closed():
        tab.screenshot(path=str(tmp_path / "last-page.png"), full_page=True)
        tab.close()


@pytest.fixture(scope="module")
def web(app, database_url, redis_url, services_root):
    """The Procfile's `web` command (gunicorn, gevent workers) on the test services: its URL."""
    lines = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines())
    home = Path(tempfile.mkdtemp(prefix="ui-web-", dir=services_root))
    port = free_port()
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "PORT": str(port),
           "PROMETHEUS_MULTIPROC_DIR": str(home / "metrics"), "PATH": path,
           "SECRET_KEY_FILE": str(home / "secret-key"),
           "WORKSPACE_ROOT": app.config["WORKSPACE_ROOT"]}  # fmt: skip
    with open(home / "web.log", "ab") as log:
        process = subprocess.Popen(["bash", "-c", lines["web"]], cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def ready():
        assert process.poll() is None, (home / "web.log").read_text()[-3000:]
        try:
            return requests.get(f"{url}/health/live", timeout=2).ok
        except requests.RequestException:
            return False

    wait_until(ready, 60, message="the Procfile's web process")
    yield url
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(40)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def sign_in(page, web: str, secret: str) -> None:
    """Sign a tab in through the form (signed out first), typing the token, pressing Enter."""
    page.context.clear_cookies()
    page.goto(f"{web}/ui/login")
    page.get_by_label("API token").fill(secret)
    page.get_by_label("API token").press("Enter")
    page.wait_for_url(f"{web}/ui/")
