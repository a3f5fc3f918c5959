"""The planner agent: a stand-in OpenCode server answers; bad answers fall back to heuristics."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.drivers.base import AgentSpec
from app.services import planning
from app.services.planner_agent import PLAN_JSON_SCHEMA
from tests.api.test_plans import OAUTH, WORKER_CAPABILITIES, opencode_agent

GOOD_PLAN = {
    "reasons": ["backend and UI can be built in parallel"],
    "tasks": [
        {"key": "design", "title": "Design the OAuth flow", "description": "Pick the provider.",
         "required_capabilities": ["system_design"],
         "estimate": {"optimistic_hours": 1, "likely_hours": 2, "pessimistic_hours": 3}},
        {"key": "backend", "title": "Build the callback", "description": "Handle the code.",
         "required_capabilities": ["code_generation"], "depends_on": [{"key": "design"}],
         "estimate": {"optimistic_hours": 2, "likely_hours": 3, "pessimistic_hours": 7}},
        {"key": "ui", "title": "Add the login button", "description": "React button.",
         "required_capabilities": ["code_generation"], "depends_on": [{"key": "design"}],
         "estimate": {"optimistic_hours": 0.5, "likely_hours": 1, "pessimistic_hours": 2}},
        {"key": "test", "title": "Test the login", "description": "End to end.",
         "required_capabilities": ["test_generation"],
         "depends_on": [{"key": "backend"}, {"key": "ui", "required": False}],
         "estimate": {"optimistic_hours": 1, "likely_hours": 1, "pessimistic_hours": 1}},
    ],
}  # fmt: skip


def message(structured=None, text=None, error=None):
    info = {"id": "msg_1", "role": "assistant", "structured": structured}
    if error:
        info["error"] = error
    parts = [{"type": "text", "text": text}] if text is not None else []
    return json.dumps({"info": info, "parts": parts})


class FakeOpenCode:
    """Answers POST /session and POST /session/{id}/message with a scripted body."""

    def __init__(self):
        self.reply = message(GOOD_PLAN)
        self.delay = 0.0
        self.requests = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                fake.requests.append((self.path.split("?")[0], body))
                if self.path.startswith("/session/ses_1/message"):
                    time.sleep(fake.delay)
                    payload = fake.reply
                elif self.path.startswith("/session/ses_1/abort"):
                    payload = "true"
                else:
                    payload = json.dumps({"id": "ses_1", "title": body.get("title")})
                data = payload.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def opencode():
    server = FakeOpenCode()
    yield server
    server.close()


def agent_at(url, **config):
    return AgentSpec(id="a1", name="planner", driver="opencode", endpoint=url, config=config)


def test_a_valid_answer_becomes_the_plan(opencode):
    proposed = planning.propose_plan(OAUTH, agent=agent_at(opencode.url), max_depth=2)
    assert proposed.info["planner"] == "opencode_agent"
    assert proposed.info["fallback_reason"] is None
    assert proposed.info["agent"] == {"id": "a1", "name": "planner", "opencode_session": "ses_1"}
    assert [task["key"] for task in proposed.plan.tasks] == ["design", "backend", "ui", "test"]
    assert proposed.plan.critical_path == ["design", "backend", "test"]
    assert proposed.info["reasons"] == GOOD_PLAN["reasons"]
    path, sent = opencode.requests[-1]
    assert path == "/session/ses_1/message"
    assert sent["format"] == {"type": "json_schema", "schema": PLAN_JSON_SCHEMA, "retryCount": 1}
    assert OAUTH in sent["parts"][0]["text"] and "at most moderate" in sent["parts"][0]["text"]
    created = opencode.requests[0][1]
    assert {"permission": "edit", "pattern": "*", "action": "deny"} in created["permission"]


def test_json_in_a_fenced_text_part_is_accepted(opencode):
    opencode.reply = message(text=f"```json\n{json.dumps(GOOD_PLAN)}\n```")
    proposed = planning.propose_plan(OAUTH, agent=agent_at(opencode.url))
    assert proposed.info["planner"] == "opencode_agent"


CYCLE = {"tasks": [
    {**GOOD_PLAN["tasks"][0], "depends_on": [{"key": "backend"}]}, GOOD_PLAN["tasks"][1],
]}  # fmt: skip
UNKNOWN_CAPABILITY = {"tasks": [{**GOOD_PLAN["tasks"][0], "required_capabilities": ["magic"]}]}
BACKWARDS_ESTIMATE = {"tasks": [{**GOOD_PLAN["tasks"][0], "estimate": {
    "optimistic_hours": 5, "likely_hours": 1, "pessimistic_hours": 2}}]}  # fmt: skip


@pytest.mark.parametrize(
    "reply, reason",
    [
        ('{"info": {"structured": {"tasks": [', "not valid JSON"),
        (message(text="Here is the plan: design, then build."), "not valid JSON"),
        (message({"steps": ["design", "build"]}), "plan schema"),
        (message(CYCLE), "cycle"),
        (message(UNKNOWN_CAPABILITY), "required_capabilities"),
        (message(BACKWARDS_ESTIMATE), "optimistic <= likely <= pessimistic"),
        (message(error={"name": "StructuredOutputError", "data": {"message": "no JSON"}}),
         "StructuredOutputError"),
        ('["not", "a", "message"]', "not an assistant message"),
    ],
)  # fmt: skip
def test_an_invalid_answer_falls_back_to_the_heuristics(opencode, caplog, reply, reason):
    opencode.reply = reply
    proposed = planning.propose_plan(OAUTH, agent=agent_at(opencode.url))
    assert proposed.info["planner"] == "heuristic"
    assert reason in proposed.info["fallback_reason"]
    assert proposed.info["agent"] == {"id": "a1", "name": "planner"}
    assert proposed.info["reasons"][0].startswith("planner agent planner failed")
    assert proposed.plan.template == "web_service"
    assert "planner_agent_fallback" in caplog.text


def test_a_slow_agent_is_abandoned_and_its_turn_aborted(opencode):
    opencode.delay = 2.0
    agent = agent_at(opencode.url, planner_timeout_seconds=0.3)
    proposed = planning.propose_plan(OAUTH, agent=agent)
    assert proposed.info["fallback_reason"] == "no answer within 0.3s"
    assert any(path == "/session/ses_1/abort" for path, _ in opencode.requests)


def test_an_unreachable_agent_falls_back():
    proposed = planning.propose_plan(OAUTH, agent=agent_at("http://127.0.0.1:9"))
    assert proposed.info["planner"] == "heuristic"
    assert "unavailable" in proposed.info["fallback_reason"]


def test_session_records_the_fallback_reason(client, db, opencode):
    opencode.reply = '{"info": {"structured": '
    opencode_agent(
        client, name="planner", capabilities=["task_decomposition"], endpoint=opencode.url
    )
    opencode_agent(client, capabilities=WORKER_CAPABILITIES)
    response = client.post("/api/v1/sessions", json={"prompt": OAUTH})
    assert response.status_code == 201, response.json
    info = response.json["plan_info"]
    assert info["planner"] == "heuristic"
    assert info["agent"]["name"] == "planner"
    assert "not valid JSON" in info["fallback_reason"]
    assert any(task["key"] == "requirements" for task in response.json["tasks"])


def test_session_runs_the_agent_plan_when_valid(client, db, opencode):
    opencode_agent(
        client, name="planner", capabilities=["task_decomposition"], endpoint=opencode.url
    )
    opencode_agent(client, capabilities=WORKER_CAPABILITIES)
    response = client.post("/api/v1/sessions", json={"prompt": OAUTH, "title": "OAuth"})
    assert response.status_code == 201, response.json
    assert response.json["plan_info"]["planner"] == "opencode_agent"
    tasks = {task["key"]: task for task in response.json["tasks"]}
    assert list(tasks) == ["design", "backend", "ui", "test"]
    assert {"key": "ui", "type": "finish_to_start", "required": False} in tasks["test"][
        "depends_on"
    ]
