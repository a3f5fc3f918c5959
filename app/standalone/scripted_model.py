"""A scripted stand-in for an OpenAI-compatible model server: it follows directives, never thinks.

This is not a model. It serves ``GET /v1/models`` and ``POST /v1/chat/completions`` so that a real
``opencode serve`` can run turns offline and deterministically. The last user message picks the
script; one directive per line, run as successive model turns:

- ``WRITE_FILE:<path>:<text>``       a ``write`` tool call (``\\n`` in text becomes a newline)
- ``EDIT_FILE:<path>:<old>:<new>``   an ``edit`` tool call
- ``BASH:<cmd>``                     a ``bash`` tool call
- ``ASK_PERMISSION:<path>``          a call that makes OpenCode ask: ``read`` of a ``*.env`` file,
                                     else a ``write`` to ``<path>`` (ask only for outside paths)
- ``SLOW:<secs>``                    a text reply streamed slowly over ``secs`` (ends the turn)
- ``HTTP_ERROR:<code>[:<retry_after_ms>]``  answer every request of the turn with that status
- ``PLAN_JSON:[<json>]``             a JSON plan (default: a 3-task plan) as the text reply, or
                                     as a ``StructuredOutput`` call when the prompt had `format`

Any other text is echoed. After the last tool directive the reply is a short final text.
Streaming requests always get SSE (a plain JSON body makes OpenCode loop forever). Title
requests (no tools, a "title generator" system prompt) get a short title. Usage figures are
computed from text lengths (prompt: every message of the request; OpenCode reports them per
model step). ``GET /_stats`` counts requests per script and lists each reply's total tokens
(``usage``); ``POST /_control`` with
``{"fail_next": N, "status": C, "retry_after_ms": M}`` fails the next N requests, and
``{"reset": true}`` clears counters. Stdlib only; run it with
``python -m app.standalone.scripted_model --port N``.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger(__name__)

MODEL_ID = "scripted"
TOOL_DIRECTIVES = ("WRITE_FILE", "EDIT_FILE", "BASH", "ASK_PERMISSION")
TURN_DIRECTIVES = ("SLOW", "HTTP_ERROR", "PLAN_JSON")
STRUCTURED_TOOL = "StructuredOutput"  # offered by OpenCode when a prompt carries `format`
DEFAULT_PLAN = {
    "tasks": [
        {"key": "design", "title": "Design the change", "depends_on": []},
        {"key": "implement", "title": "Implement the change", "depends_on": ["design"]},
        {"key": "test", "title": "Test the change", "depends_on": ["implement"]},
    ]
}


def _text_of(content: Any) -> str:
    """The plain text of a message content (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _tokens(text: str) -> int:
    """A deterministic token count: one per four characters, at least one."""
    return max(1, (len(text) + 3) // 4)


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def parse_script(prompt: str) -> list[tuple[str, str]]:
    """Split a prompt into (directive, argument) steps; non-directive text becomes one echo step."""
    steps: list[tuple[str, str]] = []
    echo: list[str] = []
    for line in prompt.splitlines():
        head, sep, rest = line.strip().partition(":")
        if sep and head in TOOL_DIRECTIVES + TURN_DIRECTIVES:
            steps.append((head, rest))
        elif line.strip():
            echo.append(line.strip())
    if echo and not steps:
        steps.append(("ECHO", "\n".join(echo)))
    return steps


def tool_call_for(directive: str, arg: str) -> tuple[str, dict[str, Any]]:
    """The (tool name, arguments) OpenCode should run for one tool directive."""
    if directive == "WRITE_FILE":
        path, _, text = arg.partition(":")
        return "write", {"filePath": path, "content": text.replace("\\n", "\n") + "\n"}
    if directive == "EDIT_FILE":
        path, _, rest = arg.partition(":")
        old, _, new = rest.partition(":")
        return "edit", {"filePath": path, "oldString": old, "newString": new}
    if directive == "BASH":
        return "bash", {"command": arg, "description": "scripted command"}
    if arg.rsplit("/", 1)[-1].startswith(".env") or arg.endswith(".env"):
        return "read", {"filePath": arg}
    return "write", {"filePath": arg, "content": "written by the scripted model\n"}


class ScriptedModelState:
    """Counters and failure injection shared by all request handlers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stats: dict[str, int] = {}
        self.requests = 0
        self.fail_next = 0
        self.fail_status = 500
        self.fail_retry_after_ms: int | None = None
        self.usage: list[int] = []  # total tokens each reply reported, newest last (1000 kept)

    def count(self, script: str) -> None:
        """Count one request for `script`."""
        with self.lock:
            self.requests += 1
            self.stats[script] = self.stats.get(script, 0) + 1

    def note_usage(self, total_tokens: int) -> None:
        """Remember the total tokens one reply reported."""
        with self.lock:
            self.usage = [*self.usage[-999:], total_tokens]

    def tick(self, name: str) -> None:
        """Count a non-request happening, such as one chunk of a slow stream."""
        with self.lock:
            self.stats[name] = self.stats.get(name, 0) + 1

    def take_injected_failure(self) -> tuple[int, int | None] | None:
        """The (status, retry-after ms) of an injected failure, if one is pending."""
        with self.lock:
            if self.fail_next <= 0:
                return None
            self.fail_next -= 1
            return self.fail_status, self.fail_retry_after_ms

    def snapshot(self) -> dict[str, Any]:
        """A JSON-safe copy of the counters."""
        with self.lock:
            return {
                "requests": self.requests,
                "by_script": dict(self.stats),
                "fail_next": self.fail_next,
                "usage": list(self.usage),
            }

    def control(self, body: dict[str, Any]) -> None:
        """Apply a /_control command."""
        with self.lock:
            if body.get("reset"):
                self.stats.clear()
                self.requests = 0
                self.fail_next = 0
                self.usage = []
            if "fail_next" in body:
                self.fail_next = int(body["fail_next"])
                self.fail_status = int(body.get("status", 500))
                self.fail_retry_after_ms = body.get("retry_after_ms")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("scripted_model " + format, *args)

    # -- plumbing -------------------------------------------------------------------------
    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _read_json(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def _send_error(self, status: int, retry_after_ms: int | None) -> None:
        headers = {"retry-after-ms": str(retry_after_ms)} if retry_after_ms is not None else {}
        error = {"message": f"scripted error {status}", "type": "scripted_error", "code": status}
        self._send_json(status, {"error": error}, headers)

    # -- routes ---------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            model = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "scripted"}
            self._send_json(200, {"object": "list", "data": [model]})
        elif self.path == "/_stats":
            self._send_json(200, self.server.state.snapshot())
        else:
            self._send_json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        body = self._read_json()
        if self.path == "/_control":
            self.server.state.control(body)
            self._send_json(200, self.server.state.snapshot())
        elif self.path.rstrip("/") in ("/v1/chat/completions", "/chat/completions"):
            self._chat(body)
        else:
            self._send_json(404, {"error": {"message": "not found"}})

    def _chat(self, body: dict[str, Any]) -> None:
        state = self.server.state
        injected = state.take_injected_failure()
        if injected is not None:
            state.count("INJECTED_FAILURE")
            self._send_error(*injected)
            return
        messages = body.get("messages") or []
        tools = {t.get("function", {}).get("name") for t in body.get("tools") or []}
        system = " ".join(_text_of(m.get("content")) for m in messages if m.get("role") == "system")
        prompt_text = "\n".join(_text_of(m.get("content")) for m in messages)
        if not tools and "title generator" in system:
            state.count("TITLE")
            self._reply(body, prompt_text, text="Scripted task")
            return
        last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
        prompt = _text_of(messages[last_user].get("content")) if last_user >= 0 else ""
        done = sum(1 for m in messages[last_user + 1 :] if m.get("role") == "assistant")
        steps = parse_script(prompt)
        if done >= len(steps):
            state.count("FINAL")
            ran = ", ".join(d.lower() for d, _ in steps) or "nothing"
            self._reply(body, prompt_text, text=f"Done: ran {len(steps)} scripted step(s) ({ran}).")
            return
        directive, arg = steps[done]
        state.count(directive)
        if directive == "HTTP_ERROR":
            code, _, retry_after = arg.partition(":")
            self._send_error(int(code or 500), int(retry_after) if retry_after else None)
        elif directive == "SLOW":
            self._reply(body, prompt_text, text="slow ", slow_seconds=float(arg or 5))
        elif directive == "PLAN_JSON":
            plan = arg.strip() or json.dumps(DEFAULT_PLAN)
            if STRUCTURED_TOOL in tools and _is_json_object(plan):  # the prompt had `format`
                self._reply(body, prompt_text, tool=(STRUCTURED_TOOL, json.loads(plan)))
            else:
                self._reply(body, prompt_text, text=plan)
        elif directive == "ECHO":
            self._reply(body, prompt_text, text=arg)
        else:
            name, arguments = tool_call_for(directive, arg)
            if name not in tools:
                self._reply(body, prompt_text, text=f"Tool '{name}' was not offered; skipped.")
            else:
                self._reply(body, prompt_text, tool=(name, arguments))

    # -- replies --------------------------------------------------------------------------
    def _reply(
        self,
        body: dict[str, Any],
        prompt_text: str,
        text: str = "",
        tool: tuple[str, dict[str, Any]] | None = None,
        slow_seconds: float = 0.0,
    ) -> None:
        arguments = json.dumps(tool[1]) if tool else ""
        usage = {"prompt_tokens": _tokens(prompt_text)}
        usage["completion_tokens"] = _tokens(text * max(1, int(slow_seconds * 5)) + arguments)
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        self.server.state.note_usage(usage["total_tokens"])
        finish = "tool_calls" if tool else "stop"
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": text or None}
            if tool:
                call = {"name": tool[0], "arguments": arguments}
                message["tool_calls"] = [{"id": "call_0", "type": "function", "function": call}]
            choice = {"index": 0, "message": message, "finish_reason": finish}
            self._send_json(200, {**self._envelope("chat.completion"), "choices": [choice]})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        envelope = self._envelope("chat.completion.chunk")
        try:
            self._chunk(envelope, {"role": "assistant", "content": ""})
            if tool:
                call_id = "call_" + uuid.uuid4().hex[:8]
                half = len(arguments) // 2
                head = {"name": tool[0], "arguments": arguments[:half]}
                self._chunk(
                    envelope,
                    {
                        "tool_calls": [
                            {"index": 0, "id": call_id, "type": "function", "function": head}
                        ]
                    },
                )
                tail = {"arguments": arguments[half:]}
                self._chunk(envelope, {"tool_calls": [{"index": 0, "function": tail}]})
            elif slow_seconds > 0:
                deadline = time.monotonic() + slow_seconds
                while time.monotonic() < deadline:
                    self._chunk(envelope, {"content": text})
                    self.server.state.tick("SLOW_CHUNK")
                    time.sleep(0.2)
            else:
                for start in range(0, len(text), 40):
                    self._chunk(envelope, {"content": text[start : start + 40]})
            self._chunk(envelope, {}, finish=finish)
            self._raw({**envelope, "choices": [], "usage": usage})
            self._write(b"data: [DONE]\n\n")
            self._write(b"")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _envelope(self, obj: str) -> dict[str, Any]:
        return {
            "id": "chatcmpl-" + uuid.uuid4().hex[:12],
            "object": obj,
            "created": int(time.time()),
            "model": MODEL_ID,
        }

    def _chunk(
        self, envelope: dict[str, Any], delta: dict[str, Any], finish: str | None = None
    ) -> None:
        self._raw({**envelope, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    def _raw(self, payload: dict[str, Any]) -> None:
        self._write(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def _write(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self.state = ScriptedModelState()


class ScriptedModelServer:
    """The scripted model server running in a background thread of this process."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _Server((host, port))
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The TCP port it listens on."""
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, ending in /v1."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def state(self) -> ScriptedModelState:
        """Counters and failure injection."""
        return self._server.state

    def start(self) -> ScriptedModelServer:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="scripted-model", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """Run the scripted model server in the foreground."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    server = _Server((args.host, args.port))
    print(
        f"scripted model listening on http://{args.host}:{server.server_address[1]}/v1", flush=True
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
