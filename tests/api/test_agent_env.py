"""An agent's `env` (the variables its shell commands get) is validated: names a shell accepts,
string values, bounded in count and size, none of the orchestrator's own ORCH_* names."""

import pytest

AGENT = {"name": "env-agent", "type": "implementer", "driver": "shell",
         "capabilities": ["code_generation"]}  # fmt: skip


@pytest.mark.parametrize(
    ("env", "why"),
    [
        ({"1ABC": "x"}, "letters, digits and _"),
        ({"A-B": "x"}, "letters, digits and _"),
        ({"": "x"}, "letters, digits and _"),
        ({"ORCH_TASK_KEY": "x"}, "set by the orchestrator"),
        ({"A": 1}, "must be a string"),
        ({"A": None}, "must be a string"),
        ({"A": "x\x00y"}, "NUL"),  # the input guard answers first
        ({"A": "x" * 9000}, "At most 8192 characters"),
        ({f"V{i}": "x" for i in range(65)}, "At most 64 variables"),
        ({f"V{i}": "x" * 8000 for i in range(10)}, "characters in all"),
        (["A=1"], "object of NAME: value strings"),
        ("A=1", "object of NAME: value strings"),
    ],
)
def test_an_invalid_env_is_a_422_naming_the_problem(client, db, env, why):
    response = client.post("/api/v1/agents", json={**AGENT, "config": {"env": env}})
    assert response.status_code == 422, response.json
    assert why in str(response.json["errors"]), response.json
    created = client.post("/api/v1/agents", json=AGENT).json
    patched = client.patch(f"/api/v1/agents/{created['id']}", json={"config": {"env": env}})
    assert patched.status_code == 422 and why in str(patched.json["errors"])


def test_a_valid_env_is_stored_and_never_returned(client, db):
    env = {"GREETING": "hello", "_UNDERSCORE": "", "PATH": "/usr/bin:/bin"}
    response = client.post("/api/v1/agents", json={**AGENT, "config": {"env": env}})
    assert response.status_code == 201, response.json
    assert "config" not in response.json and "hello" not in response.get_data(as_text=True)
    from models import Agent

    assert db.get(Agent, response.json["id"]).config == {"env": env}
