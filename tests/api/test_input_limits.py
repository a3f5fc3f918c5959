"""Bad input is a 4xx on every endpoint, never a 500: JSON nested past the limit, NaN and
Infinity anywhere, bodies over MAX_CONTENT_LENGTH, lists over their maximum; and the session list
never reads task outputs."""

import io
import json

import pytest
from sqlalchemy import event, update

from app.api.input_guard import find_problem
from app.extensions import db as database
from app.schemas import limits
from app.schemas.sessions import SessionCreateSchema
from app.services.tokens import SCOPES
from models import SessionTask

AGENT = {"name": "runner", "type": "implementer", "capabilities": ["code_generation"],
         "driver": "shell"}  # fmt: skip
SESSION = {"title": "t", "prompt": "p", "dag": {"tasks": [{"key": "a", "command": "true"}]}}

# One body per endpoint family that takes JSON; `{hole}` is where the tests put a value.
BODIES = {
    "session metadata": ("post", "/api/v1/sessions", '{"title": "t", "prompt": "p", '
                         '"dag": {"tasks": [{"key": "a", "command": "true"}]}, '
                         '"metadata": {"x": [1, {"y": {hole}}]}}'),
    "task estimate": ("post", "/api/v1/sessions", '{"title": "t", "prompt": "p", "dag": '
                      '{"tasks": [{"key": "a", "command": "true", "estimate_hours": {hole}}]}}'),
    "agent config": ("post", "/api/v1/agents", '{"name": "x", "type": "implementer", '
                     '"capabilities": ["code_generation"], "driver": "shell", '
                     '"config": {"nested": [{hole}]}}'),
    "context value": ("put", "/api/v1/contexts/global/k", '{"value": {"list": [0, {hole}]}}'),
    "context merge": ("post", "/api/v1/contexts/merge", '{"target": {"scope": "global", '
                      '"key": "k"}, "value": [{hole}], "strategy": "deep_merge"}'),
    "plan preview": ("post", "/api/v1/plans", '{"prompt": "p", "max_depth": {hole}}'),
    "agent route": ("post", "/api/v1/agents/route", '{"required_capabilities": [], '
                    '"technologies": [{hole}]}'),
}  # fmt: skip
WHERE = {"session metadata": "metadata.x.1.y", "task estimate": "dag.tasks.0.estimate_hours",
         "agent config": "config.nested.0", "context value": "value.list.1",
         "context merge": "value.0", "plan preview": "max_depth",
         "agent route": "technologies.0"}  # fmt: skip


def send(client, name, value: str):
    method, path, template = BODIES[name]
    body = template.replace("{hole}", value)
    return getattr(client, method)(path, data=body, content_type="application/json")


def nested(depth: int, leaf: str = "1") -> str:
    """JSON of `depth` nested containers (arrays and objects in turn) around `leaf`."""
    text = leaf
    for level in range(depth):
        text = f"[{text}]" if level % 2 else f'{{"k": {text}}}'
    return text


def assert_error(response, code):
    assert response.status_code == code, response.get_data(as_text=True)[:500]
    body = response.json
    assert set(body) >= {"code", "status", "message", "errors"}
    assert body["code"] == code
    return body


@pytest.mark.parametrize("name", BODIES)
@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])
def test_nan_and_infinity_anywhere_are_422_naming_where(client, db, name, constant):
    body = assert_error(send(client, name, constant), 422)
    assert "NaN" in body["message"] and "Infinity" in body["message"]
    assert list(body["errors"]) == [WHERE[name]]


@pytest.mark.parametrize("name", BODIES)
def test_json_nested_past_the_limit_is_422(client, app, db, name):
    limit = app.config["JSON_MAX_DEPTH"]
    body = assert_error(send(client, name, nested(limit)), 422)
    assert f"{limit} levels" in body["message"]
    assert WHERE[name].split(".")[0] in next(iter(body["errors"]))


@pytest.mark.parametrize("depth", [5_000, 200_000])
def test_json_nested_past_the_interpreter_recursion_is_422(client, db, depth):
    """Deeper than Python's json can recurse: refused, not a RecursionError (a 500)."""
    text = "[" * depth + "]" * depth
    assert_error(send(client, "context value", text), 422)
    unclosed = '{"value": ' + "[" * depth  # never closed: still a 4xx
    response = client.put("/api/v1/contexts/global/k", data=unclosed,
                          content_type="application/json")  # fmt: skip
    assert 400 <= response.status_code < 500


def test_nesting_up_to_the_limit_is_stored(client, app, db):
    limit = app.config["JSON_MAX_DEPTH"]
    value = nested(limit - 1)  # the body's own object is the first level
    response = client.put("/api/v1/contexts/global/k", data=f'{{"value": {value}}}',
                          content_type="application/json")  # fmt: skip
    assert response.status_code in (200, 201), response.json
    assert response.json["value"] == json.loads(value)


def test_a_number_with_too_many_digits_is_a_4xx(client, db):
    response = send(client, "context value", "1" * 5000)
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)[:300]


def test_invalid_json_is_still_400(client, db):
    response = client.post("/api/v1/agents", data='{"name": ', content_type="application/json")
    assert_error(response, 400)


def padded(body: dict, size: int) -> bytes:
    """`body` as JSON padded with trailing whitespace to exactly `size` bytes."""
    data = json.dumps(body).encode()
    return data + b" " * (size - len(data))


def test_a_body_over_max_content_length_is_413_in_the_api_format(client, app, agent, db):
    limit = app.config["MAX_CONTENT_LENGTH"]
    data = padded(SESSION, limit + 1)
    response = client.post("/api/v1/sessions", data=data, content_type="application/json")
    body = assert_error(response, 413)
    assert body["status"] == "Request Entity Too Large"
    assert str(limit) in body["message"]
    at_limit = client.post(
        "/api/v1/sessions", data=padded(SESSION, limit), content_type="application/json"
    )
    assert at_limit.status_code == 201, at_limit.json


def test_a_chunked_body_over_max_content_length_is_413(client, app, db):
    """Without a Content-Length, the body is cut off at the limit while it is read."""
    data = padded({"value": 1}, app.config["MAX_CONTENT_LENGTH"] + 1)
    response = client.put(
        "/api/v1/contexts/global/k",
        input_stream=io.BytesIO(data),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},  # as gunicorn sets for chunked
    )
    assert_error(response, 413)


def test_a_non_json_body_over_max_content_length_is_413(client, app, db):
    data = b"x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    response = client.post("/api/v1/sessions/x/start", data=data, content_type="text/plain")
    assert_error(response, 413)


@pytest.fixture
def agent(client, db):
    every = ["code_generation", "test_generation"]
    return client.post("/api/v1/agents", json={**AGENT, "capabilities": every}).json


def task(key, **fields):
    return {"key": key, "command": "true", **fields}


def many_dependencies(count):
    tasks = [task(f"t{i}") for i in range(count)]
    return [*tasks, task("join", depends_on=[t["key"] for t in tasks])]


def dense_dag(per_task, tasks):
    """`tasks` tasks after a layer of `per_task`, each depending on the whole layer."""
    layer = [task(f"l{i}") for i in range(per_task)]
    keys = [t["key"] for t in layer]
    return layer + [task(f"d{i}", depends_on=keys) for i in range(tasks)]


OVER = [
    ("depends_on", {"dag": {"tasks": many_dependencies(limits.MAX_DEPENDENCIES + 1)}},
     ["dag", "tasks", str(limits.MAX_DEPENDENCIES + 1), "depends_on"]),
    ("dependencies per DAG",
     {"dag": {"tasks": dense_dag(limits.MAX_DEPENDENCIES,
                                 limits.MAX_DAG_DEPENDENCIES // limits.MAX_DEPENDENCIES + 1)}},
     ["dag", "tasks"]),
    ("tasks", {"dag": {"tasks": [task(f"t{i}") for i in range(limits.MAX_TASKS + 1)]}},
     ["dag", "tasks"]),
    ("tags", {"tags": [f"t{i}" for i in range(limits.MAX_TAGS + 1)]}, ["tags"]),
    ("required_capabilities",
     {"dag": {"tasks": [task("a", required_capabilities=["code_generation"] * 25)]}},
     ["dag", "tasks", "0", "required_capabilities"]),
]  # fmt: skip


@pytest.mark.parametrize("name, fields, path", OVER, ids=[case[0] for case in OVER])
def test_session_lists_over_their_limit_are_422_naming_the_field(
    client, agent, db, name, fields, path
):
    body = assert_error(client.post("/api/v1/sessions", json={**SESSION, **fields}), 422)
    errors = body["errors"]
    for part in path:
        assert part in errors, (path, body["errors"])
        errors = errors[part]
    assert any("most" in message for message in errors), errors


AGENT_OVER = [
    ("capabilities", {"capabilities": ["code_generation"] * (limits.MAX_CAPABILITIES + 1)}),
    ("preferred_technologies",
     {"preferred_technologies": ["python"] * (limits.MAX_TECHNOLOGIES + 1)}),
    ("avoided_technologies", {"avoided_technologies": ["go"] * (limits.MAX_TECHNOLOGIES + 1)}),
]  # fmt: skip


@pytest.mark.parametrize("field, fields", AGENT_OVER, ids=[case[0] for case in AGENT_OVER])
def test_agent_lists_over_their_limit_are_422_naming_the_field(client, db, field, fields):
    created = assert_error(client.post("/api/v1/agents", json={**AGENT, **fields}), 422)
    assert field in created["errors"]
    agent = client.post("/api/v1/agents", json=AGENT).json
    changed = assert_error(client.patch(f"/api/v1/agents/{agent['id']}", json=fields), 422)
    assert field in changed["errors"]


def test_token_scopes_over_their_limit_are_422(client, db):
    body = {"name": "x", "scopes": ["read"] * (len(SCOPES) + 1)}
    assert "scopes" in assert_error(client.post("/api/v1/tokens", json=body), 422)["errors"]


def test_lists_at_their_limit_are_accepted(client, agent, db):
    dag = many_dependencies(limits.MAX_DEPENDENCIES)
    dag[0]["required_capabilities"] = ["code_generation", "test_generation"]
    body = {**SESSION, "dag": {"tasks": dag}, "tags": [f"t{i}" for i in range(limits.MAX_TAGS)]}
    response = client.post("/api/v1/sessions", json=body)
    assert response.status_code == 201, response.json
    assert len(response.json["tasks"][-1]["depends_on"]) == limits.MAX_DEPENDENCIES


def layered_dag(size):
    """bench/planning.py's 10,000-task shape as a session: 1-3 dependencies on earlier layers,
    each dependency an object, each task with title, description and capabilities."""
    width, tasks = int(size**0.5), []
    for index in range(size):
        layer = index // width
        earlier = range(max(0, layer - 2) * width, layer * width)
        depends = [{"key": f"task-{i}", "type": "finish_to_start", "required": True}
                   for i in list(earlier)[index % 7 :: 37][:3]]  # fmt: skip
        tasks.append({"key": f"task-{index}", "title": f"Task {index}",
                      "description": "synthetic", "command": "true",
                      "required_capabilities": ["code_generation"], "depends_on": depends,
                      "estimate_hours": 1.5})  # fmt: skip
    return {"title": "big", "prompt": "p", "dag": {"tasks": tasks}}


def test_a_10000_task_dag_is_within_every_limit(app):
    body = layered_dag(limits.MAX_TASKS)
    assert len(json.dumps(body).encode()) < app.config["MAX_CONTENT_LENGTH"]
    assert find_problem(body, "", app.config["JSON_MAX_DEPTH"]) is None  # the input guard
    loaded = SessionCreateSchema().load(body)
    assert len(loaded["dag"]["tasks"]) == 10_000
    assert sum(len(task["depends_on"]) for task in loaded["dag"]["tasks"]) > 20_000


def captured_statements(engines):
    """Attach listeners that record (statement, rows) for every statement the engines run."""
    seen: list[list] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        seen.append([statement, 0])

    def after(conn, cursor, statement, parameters, context, executemany):
        seen[-1][1] = cursor.rowcount if cursor.description is not None else 0

    for engine in engines:
        event.listen(engine, "before_cursor_execute", before)
        event.listen(engine, "after_cursor_execute", after)

    def detach():
        for engine in engines:
            event.remove(engine, "before_cursor_execute", before)
            event.remove(engine, "after_cursor_execute", after)

    return seen, detach


def test_the_session_list_never_reads_task_outputs(client, agent, db):
    tasks = [task(f"t{i}") for i in range(40)]
    ids = [client.post("/api/v1/sessions", json={**SESSION, "dag": {"tasks": tasks}}).json["id"]
           for _ in range(3)]  # fmt: skip
    big = {"stdout": "x" * 200_000, "files": ["f"] * 1000}
    db.execute(update(SessionTask).where(SessionTask.key.in_(["t0", "t1"]))
               .values(result=big, status="completed"))  # fmt: skip
    db.commit()
    seen, detach = captured_statements({database.engine, database.reader})
    try:
        response = client.get("/api/v1/sessions?page_size=10")
    finally:
        detach()
    assert response.status_code == 200
    assert [item["id"] for item in response.json["items"]] == ids[::-1]
    assert response.json["items"][0]["progress"] == {
        "total": 40, "by_status": {"completed": 2, "pending": 38}
    }  # fmt: skip
    reading_tasks = [(statement, rows) for statement, rows in seen if "session_tasks" in statement]
    assert reading_tasks, seen  # the progress counts still come from the tasks
    for statement, _ in reading_tasks:
        assert "session_tasks.result" not in statement and " result" not in statement, statement
    # One row per (session, status) of the page, not one per task.
    assert sum(rows for _, rows in reading_tasks) <= 3 * 2, reading_tasks
