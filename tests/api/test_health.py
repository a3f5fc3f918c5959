"""Health probes, including readiness that names the dependency that is down."""

from app import create_app
from app.standalone import free_port


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


def test_openapi_document_and_swagger_ui(client):
    spec = client.get("/api/openapi.json")
    assert spec.status_code == 200
    assert "/api/v1/sessions" in spec.json["paths"]
    assert client.get("/api/docs").status_code == 200
