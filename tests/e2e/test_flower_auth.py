"""Flower as the Procfile starts it: behind basic auth read from FLOWER_BASIC_AUTH, with the
password nowhere on its command line."""

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from app.standalone.servers import free_port
from tests.conftest import ROOT, wait_until

pytestmark = pytest.mark.e2e

PASSWORD = "flower-password-not-in-argv"


def procfile_command(name: str) -> str:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines)[name]


def answer(url: str, **kwargs) -> int | None:
    try:
        return requests.get(url, timeout=2, **kwargs).status_code
    except requests.ConnectionError:
        return None


def test_flower_asks_for_the_password_it_read_from_its_environment(worker_env, tmp_path):
    port = free_port()
    env = {**worker_env, "FLOWER_BASIC_AUTH": f"admin:{PASSWORD}", "FLOWER_PORT": str(port),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{worker_env['PATH']}"}  # fmt: skip
    log = open(tmp_path / "flower.log", "wb")
    flower = subprocess.Popen(["bash", "-c", procfile_command("flower")], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/"
        assert wait_until(lambda: answer(url), 60, interval=0.2, message="flower") == 401
        assert answer(url, auth=("admin", "wrong")) == 401
        assert answer(url, auth=("admin", PASSWORD)) == 200
        argv = Path(f"/proc/{flower.pid}/cmdline").read_bytes()  # bash exec'd celery
        assert b"flower" in argv and PASSWORD.encode() not in argv
        assert base64.b64encode(PASSWORD.encode()) not in argv
    finally:
        flower.terminate()
        flower.wait(20)
        log.close()


def test_flower_refuses_to_start_without_a_password(worker_env):
    env = {key: value for key, value in worker_env.items() if key != "FLOWER_BASIC_AUTH"}
    result = subprocess.run(["bash", "-c", procfile_command("flower")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode != 0 and "set FLOWER_BASIC_AUTH" in result.stderr
