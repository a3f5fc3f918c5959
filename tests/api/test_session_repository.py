"""A session may name a git `repository` (URL and base branch) instead of a workdir."""

from __future__ import annotations

import pytest

AGENT = {"name": "repo-runner", "type": "implementer", "capabilities": ["code_generation"],
         "driver": "shell"}  # fmt: skip
DAG = {"tasks": [{"key": "a", "command": "true"}]}


def body(**extra):
    return {"title": "t", "prompt": "p", "dag": DAG, **extra}


def test_a_repository_session_stores_and_shows_url_and_branch(client, db):
    client.post("/api/v1/agents", json=AGENT)
    repository = {"url": "ssh://git@example.com/team/app.git", "branch": "develop"}
    created = client.post("/api/v1/sessions", json=body(repository=repository))
    assert created.status_code == 201, created.json
    assert created.json["repository"] == repository and created.json["workdir"] is None
    detail = client.get(f"/api/v1/sessions/{created.json['id']}").json
    assert detail["repository"] == repository
    listed = client.get("/api/v1/sessions").json["items"]
    assert listed[0]["repository"] == repository


def test_the_branch_defaults_to_the_remotes_head_and_a_workdir_session_has_none(client, db):
    client.post("/api/v1/agents", json=AGENT)
    created = client.post("/api/v1/sessions", json=body(repository={"url": "git://h/app.git"}))
    assert created.json["repository"] == {"url": "git://h/app.git", "branch": None}
    plain = client.post("/api/v1/sessions", json=body()).json
    assert plain["repository"] is None and plain["workdir"]


@pytest.mark.parametrize(
    ("extra", "field", "says"),
    [
        ({"repository": {"url": "file:///r.git"}, "workdir": "/tmp/x"}, "repository", "not both"),
        ({"repository": {"url": "ftp://h/r.git"}}, "repository", "scheme"),
        ({"repository": {"url": "https://u:pw@h/r.git"}}, "repository", "Credentials"),
        ({"repository": {"url": "git://h/r.git", "branch": "a..b"}}, "repository", "branch"),
        ({"repository": {"branch": "main"}}, "repository", "Missing"),
    ],
)
def test_bad_repositories_get_a_422_naming_the_field(client, db, extra, field, says):
    response = client.post("/api/v1/sessions", json=body(**extra))
    assert response.status_code == 422, response.json
    assert field in response.json["errors"], response.json
    assert says in str(response.json["errors"][field])
