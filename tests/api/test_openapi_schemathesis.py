"""Schemathesis against the app's own OpenAPI document, in-process over WSGI with an admin
token: valid and invalid inputs for every operation, no 5xx, every response as documented."""

from __future__ import annotations

import pytest
import redis as redis_lib
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from models.enums import AgentCapability
from tests.conftest import ADMIN_TOKEN_ID, ensure_token

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES = {GenerationMode.POSITIVE: 40, GenerationMode.NEGATIVE: 20}
KNOWN_EXAMPLES = 15


@pytest.fixture
def quarantined_app(app, redis_url, admin_token, db):
    """The app with a broker on an unused Redis database: sessions the fuzzer creates are
    never run by a worker (their commands are random text)."""
    from app import create_app

    unused = redis_url.rsplit("/", 1)[0] + "/15"
    overrides = {key: app.config[key] for key in ("DATABASE_URL", "WORKSPACE_ROOT")}
    fuzzed = create_app({**overrides, "REDIS_URL": unused})
    ensure_token(fuzzed, ADMIN_TOKEN_ID, admin_token, ["admin"])
    try:
        yield fuzzed
    finally:  # creating an app made its Celery app the current one: give the tests theirs back
        app.extensions["celery"].set_current()
        app.extensions["celery"].set_default()
        client = redis_lib.Redis.from_url(unused)
        client.flushdb()
        client.close()


def seed(app, headers: dict) -> dict[str, str]:
    """Real ids for path parameters, so that success responses are checked too."""
    client = app.test_client()
    capabilities = [capability.value for capability in AgentCapability]
    agent = {"name": "fuzz", "type": "implementer", "driver": "shell", "capabilities": capabilities}
    agent = client.post("/api/v1/agents", headers=headers, json=agent).json
    body = {"title": "fuzz", "prompt": "p", "dag": {"tasks": [{"key": "a", "command": "true"}]}}
    session = client.post("/api/v1/sessions", headers=headers, json=body).json
    token = client.post("/api/v1/tokens", headers=headers, json={"name": "x", "scopes": ["read"]})
    return {"agent_id": agent["id"], "session_id": session["id"], "token_id": token.json["id"],
            "job": "maintenance.deadlocks"}  # fmt: skip


def fuzz(operation, mode: GenerationMode, examples: int, path_parameters=None) -> None:
    """Send `examples` generated requests to one operation and check every response."""
    checks = CHECKS + ([negative_data_rejection] if mode.is_negative else [])
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=strategy)
    def exercise(case):
        case.call_and_validate(checks=checks)

    exercise()


def test_every_operation_answers_as_documented(quarantined_app, admin_token):
    config = SchemathesisConfig.from_dict(
        {"auth": {"openapi": {"bearerAuth": {"bearer": admin_token}}}}
    )
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", quarantined_app, config=config)
    known = seed(quarantined_app, {"Authorization": f"Bearer {admin_token}"})
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20
    failures: list[str] = []
    for operation in operations:
        names = [parameter.name for parameter in operation.path_parameters]
        runs = [(mode, examples, None) for mode, examples in EXAMPLES.items()]
        if names and all(name in known for name in names):
            ids = {name: known[name] for name in names}
            runs.append((GenerationMode.POSITIVE, KNOWN_EXAMPLES, ids))
        for mode, examples, ids in runs:
            try:
                fuzz(operation, mode, examples, ids)
            except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
                assert mode.is_negative, operation.label
            except (Exception, BaseExceptionGroup) as error:  # report every failure at the end
                failures.append(f"{operation.label} [{mode.value}]: {error}"[:3000])
    assert not failures, "\n\n".join(failures)
