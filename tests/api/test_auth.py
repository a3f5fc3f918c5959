"""Bearer tokens and scopes on every route of the URL map: 401 without a valid token, 403 for a
token without the scope, public probes and OpenAPI documents."""

from __future__ import annotations

import logging
import re
import uuid

import pytest
from sqlalchemy import text

from tests.conftest import ensure_token

PUBLIC = {"/health/live", "/health/ready", "/api/openapi.json", "/api/docs"}
ADMIN_PREFIXES = ("/api/v1/tokens", "/api/v1/maintenance")
READ_METHODS = {"GET", "HEAD", "OPTIONS"}
RANK = {"read": 0, "write": 1, "admin": 2}


def expected_scope(rule: str, method: str) -> str:
    if rule.startswith(ADMIN_PREFIXES):
        return "admin"
    return "read" if method in READ_METHODS else "write"


def concrete(rule: str) -> str:
    """A URL for a rule: every variable gets a value that exists nowhere."""
    return re.sub(r"<(?:int:)?[^>]+>", lambda m: "7" if m[0].startswith("<int:") else "nope", rule)


def routes(app):
    """Every (rule, method, url) of the app, derived from its URL map."""
    found = []
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods):
            found.append((rule.rule, method, concrete(rule.rule)))
    return found


def protected(app):
    """Routes that need a bearer token: all but the public ones and the dashboard's, which
    authenticate by its cookie (tests/browser/test_ui_flask.py)."""
    return [route for route in routes(app)
            if route[0] not in PUBLIC and not route[0].startswith("/ui/")]  # fmt: skip


@pytest.fixture
def tokens(app, db):
    """One token per scope, plus a revoked one: {name: secret}."""
    from app.services.tokens import new_secret

    made = {}
    for scope in ("read", "write", "admin", "revoked"):
        secret = new_secret()
        ensure_token(app, str(uuid.uuid4()) if scope != "revoked" else REVOKED_ID, secret,
                     ["read"] if scope == "revoked" else [scope])  # fmt: skip
        made[scope] = secret
    db.execute(text("UPDATE api_tokens SET revoked_at = now() WHERE id = :id"), {"id": REVOKED_ID})
    db.commit()
    return made


REVOKED_ID = "00000000-0000-4000-8000-0000000000ff"


def call(anonymous_client, method, url, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return anonymous_client.open(url, method=method, headers=headers, json={})


def test_the_url_map_has_public_and_protected_routes(app):
    rules = {rule for rule, _, _ in routes(app)}
    assert PUBLIC <= rules
    assert "/metrics" in rules and "/api/v1/tokens" in rules and "/api/v1/maintenance/jobs" in rules
    assert len(protected(app)) > 30


def test_every_protected_route_needs_a_valid_token(app, anonymous_client, tokens):
    for rule, method, url in protected(app):
        for token in (None, "orch_" + "x" * 43, "not-even-a-token", tokens["revoked"]):
            response = call(anonymous_client, method, url, token)
            assert response.status_code == 401, (method, rule, token, response.status_code)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            if method != "HEAD":
                assert response.json["code"] == 401 and response.json["message"]


def test_every_protected_route_checks_the_scope(app, anonymous_client, tokens):
    for rule, method, url in protected(app):
        needed = expected_scope(rule, method)
        for scope in ("read", "write", "admin"):
            response = call(anonymous_client, method, url, tokens[scope])
            if RANK[scope] < RANK[needed]:
                assert response.status_code == 403, (method, rule, scope, response.status_code)
                if method != "HEAD":
                    assert needed in response.json["message"]
            else:
                assert response.status_code not in (401, 403), (method, rule, scope)
                assert response.status_code < 500, (method, rule, scope, response.data[:300])


def test_public_routes_need_no_token(app, anonymous_client):
    for rule, method, url in routes(app):
        if rule in PUBLIC and method == "GET":
            assert anonymous_client.get(url).status_code in (200, 503), rule


def test_unknown_urls_are_404_not_401(anonymous_client):
    assert anonymous_client.get("/api/v1/no-such-thing").status_code == 404


def test_metrics_can_be_made_public(app, anonymous_client, monkeypatch):
    assert anonymous_client.get("/metrics").status_code == 401
    monkeypatch.setitem(app.config, "METRICS_PUBLIC", "1")
    assert anonymous_client.get("/metrics").status_code == 200


def test_auth_disabled_lets_everyone_in(app, anonymous_client, monkeypatch, db):
    monkeypatch.setitem(app.config, "AUTH_DISABLED", True)
    assert anonymous_client.get("/api/v1/agents").status_code == 200


def test_auth_disabled_warns_loudly_and_is_refused_in_production(app, caplog):
    from app import create_app
    from app.config import ConfigError

    base = {key: app.config[key] for key in ("DATABASE_URL", "REDIS_URL", "WORKSPACE_ROOT")}
    try:
        with caplog.at_level(logging.WARNING):
            create_app({**base, "AUTH_DISABLED": "1"})
        assert "AUTH_DISABLED=1" in caplog.text
        with pytest.raises(ConfigError):
            create_app({**base, "AUTH_DISABLED": "1", "ENVIRONMENT": "production"})
    finally:  # creating an app made its Celery app the current one: give the tests theirs back
        app.extensions["celery"].set_current()
        app.extensions["celery"].set_default()


def test_openapi_documents_the_bearer_scheme_and_scopes(anonymous_client):
    spec = anonymous_client.get("/api/openapi.json").json
    scheme = spec["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            if path.startswith("/health/"):
                assert operation["security"] == [], path
            else:
                assert operation["security"] == [{"bearerAuth": []}], (method, path)
                assert operation["x-required-scope"] == expected_scope(path, method.upper())
                assert {"401", "403"} <= set(operation["responses"]), (method, path)


def test_tokens_are_created_once_listed_without_secrets_and_revoked(client, anonymous_client, db):
    created = client.post("/api/v1/tokens", json={"name": "ci", "scopes": ["write"]})
    assert created.status_code == 201, created.json
    secret = created.json["token"]
    assert secret.startswith("orch_") and created.json["prefix"] == secret[:12]
    auth = {"Authorization": f"Bearer {secret}"}
    assert anonymous_client.get("/api/v1/sessions", headers=auth).status_code == 200
    assert anonymous_client.get("/api/v1/tokens", headers=auth).status_code == 403

    listed = client.get("/api/v1/tokens").json
    mine = next(token for token in listed if token["id"] == created.json["id"])
    assert "token" not in mine and mine["last_used_at"] is not None
    assert secret not in str(listed)

    assert client.delete(f"/api/v1/tokens/{mine['id']}").json["revoked_at"]
    assert anonymous_client.get("/api/v1/sessions", headers=auth).status_code == 401
    assert all(token["id"] != mine["id"] for token in client.get("/api/v1/tokens").json)
    assert client.delete("/api/v1/tokens/unknown").status_code == 404


def test_token_input_is_validated(client, db):
    response = client.post("/api/v1/tokens", json={"name": "x", "scopes": ["root"]})
    assert response.status_code == 422 and "scopes" in response.json["errors"]
    assert client.post("/api/v1/tokens", json={"scopes": ["read"]}).status_code == 422
