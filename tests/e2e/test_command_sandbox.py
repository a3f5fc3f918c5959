"""A real worker, holding the database, broker and Flask secrets, runs a task's command with a
minimal environment plus its agent's `env`, and as an unprivileged user when it is root."""

import os

import pytest

from tests.conftest import wait_until

pytestmark = pytest.mark.e2e

COMMAND = "env; echo uid=$(id -u); echo written > out.txt && cat out.txt"


def finished(client, session_id):
    body = client.get(f"/api/v1/sessions/{session_id}").json
    return body if body["status"] in ("completed", "failed") else None


def test_the_command_sees_its_agent_env_and_no_worker_secret(client, db, worker, worker_env):
    env = {"GREETING": "hello from the admin"}
    agent = {"name": "sandboxed", "type": "implementer", "capabilities": ["code_generation"],
             "driver": "shell", "config": {"env": env}}  # fmt: skip
    assert client.post("/api/v1/agents", json=agent).status_code == 201
    body = {"title": "env", "prompt": "p", "dag": {"tasks": [{"key": "env", "command": COMMAND}]}}
    session_id = client.post("/api/v1/sessions", json=body).json["id"]
    session = wait_until(lambda: finished(client, session_id), 60, interval=0.1)
    assert session["status"] == "completed", session
    output = session["tasks"][0]["result"]["stdout_tail"]
    seen = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    assert seen["GREETING"] == "hello from the admin"
    for name in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "FLOWER_BASIC_AUTH"):
        assert name not in seen and worker_env[name] not in output, name
    assert "written" in output.splitlines()  # the command can write in its workdir
    if os.geteuid() == 0:  # the worker is root (as the tests are): the command is not
        assert int(seen["uid"]) != 0
