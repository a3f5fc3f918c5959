"""Health probes, including readiness that names the dependency that is down."""

from app import create_app
from app.standalone.servers import free_port


def test_live(client):
    response = client.get("/health/live")
    assert response.status_code == 200
    assert response.json["status"] == "ok"


def test_ready_when_everything_answers(client):
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json["checks"] == {"postgresql": "ok", "redis": "ok"}


def test_ready_names_redis_when_it_is_down(database_url):
    app = create_app(
        {"DATABASE_URL": database_url, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    )
    response = app.test_client().get("/health/ready")
    assert response.status_code == 503
    assert response.json["failing"] == ["redis"]
    assert response.json["checks"]["postgresql"] == "ok"


def test_ready_names_postgresql_when_it_is_down(redis_url, database_url):
    dead = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/nowhere"
    try:
        response = (
            create_app({"DATABASE_URL": dead, "REDIS_URL": redis_url})
            .test_client()
            .get("/health/ready")
        )
    finally:
        create_app({"DATABASE_URL": database_url, "REDIS_URL": redis_url})
    assert response.status_code == 503
    assert response.json["failing"] == ["postgresql"]


def test_public_readiness_names_the_failing_dependency_without_its_error(database_url, caplog):
    """The error (host, port, user, driver text) goes to the log, redacted, not to the public."""
    port = free_port()
    app = create_app({"DATABASE_URL": database_url,
                      "REDIS_URL": f"redis://:redis-pw-1@127.0.0.1:{port}/0"})  # fmt: skip
    with caplog.at_level("WARNING", logger="app.api.health"):
        response = app.test_client().get("/health/ready")
    assert response.status_code == 503
    assert response.json == {"status": "unavailable", "failing": ["redis"],
                             "checks": {"postgresql": "ok", "redis": "unavailable"}}  # fmt: skip
    logged = [r.getMessage() for r in caplog.records if r.name == "app.api.health"]
    assert any("dependency=redis" in line and str(port) in line for line in logged), logged
    assert not any("redis-pw-1" in line for line in logged)


def test_readiness_hides_the_database_error_too(redis_url, database_url, caplog):
    port = free_port()
    dead = f"postgresql+psycopg2://orch:db-pw-2@127.0.0.1:{port}/nowhere"
    try:
        with caplog.at_level("WARNING", logger="app.api.health"):
            response = create_app({"DATABASE_URL": dead, "REDIS_URL": redis_url}).test_client().get(
                "/health/ready"
            )
    finally:
        create_app({"DATABASE_URL": database_url, "REDIS_URL": redis_url})
    assert response.status_code == 503
    assert response.json["checks"] == {"postgresql": "unavailable", "redis": "ok"}
    assert str(port) not in response.get_data(as_text=True)
    logged = " ".join(r.getMessage() for r in caplog.records if r.name == "app.api.health")
    assert "dependency=postgresql" in logged and "OperationalError" in logged
    assert "db-pw-2" not in logged


def test_openapi_document_and_swagger_ui(client):
    spec = client.get("/api/openapi.json")
    assert spec.status_code == 200
    assert "/api/v1/sessions" in spec.json["paths"]
    assert client.get("/api/docs").status_code == 200


def test_text_postgresql_cannot_store_is_a_422_not_a_500(client, db):
    body = {"name": "x", "type": "implementer", "driver": "shell",
            "capabilities": ["code_generation"], "config": {"k\ud911": "v"}}  # fmt: skip
    response = client.post("/api/v1/agents", json=body)
    assert response.status_code == 422
    nul = client.post("/api/v1/sessions", json={"title": "a\x00b", "prompt": "p"})
    assert nul.status_code == 422 and "title" in nul.json["errors"]
    assert client.get("/api/v1/sessions/abc%00def").status_code == 422
    assert client.get("/api/v1/sessions?tag=%00").status_code == 422
