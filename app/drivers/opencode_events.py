"""Follow OpenCode's server-sent event stream (GET /event) in a background thread."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import queue
import socket
import threading
from typing import Any
from urllib.parse import urlencode, urlsplit

logger = logging.getLogger(__name__)


class StreamClosed(Exception):
    """The event stream ended; `reason` says why."""

    def __init__(self, reason: str, auth_failed: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.auth_failed = auth_failed


class EventStream:
    """Reads `data: {json}` events into a queue; `get()` hands them out, `close()` stops at once."""

    def __init__(
        self,
        base_url: str,
        params: dict[str, str],
        *,
        auth: tuple[str, str | None] | None = None,
        connect_timeout: float = 3.0,
        read_timeout: float = 35.0,
    ) -> None:
        parts = urlsplit(base_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 80)
        self._path = (
            (parts.path.rstrip("/") or "") + "/event" + ("?" + urlencode(params) if params else "")
        )
        self._headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1] or ''}".encode()).decode()
            self._headers["Authorization"] = "Basic " + token
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._queue: queue.Queue[dict[str, Any] | StreamClosed] = queue.Queue()
        self._ready = threading.Event()  # set on server.connected or when the stream ends
        self.connected = False
        self._closing = threading.Event()
        self._conn: http.client.HTTPConnection | None = None
        self._thread: threading.Thread | None = None
        self.closed: StreamClosed | None = None

    def start(self) -> EventStream:
        """Connect in the background; events start queueing once the server answers."""
        self._thread = threading.Thread(target=self._run, name="opencode-events", daemon=True)
        self._thread.start()
        return self

    def wait_connected(self, timeout: float) -> None:
        """Block until `server.connected` arrived; raise StreamClosed if the stream failed first."""
        self._ready.wait(timeout)
        if self.connected:
            return
        if self.closed is not None:
            raise self.closed
        raise StreamClosed(f"no server.connected event within {timeout}s")

    def get(self, timeout: float) -> dict[str, Any] | None:
        """The next event, or None after `timeout`; raise StreamClosed once the stream has ended."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, StreamClosed):
            self._queue.put(item)  # keep reporting the end to later calls
            raise item
        return item

    def close(self) -> None:
        """Stop reading now, even in the middle of a blocking read."""
        self._closing.set()
        conn = self._conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1)

    def _run(self) -> None:
        reason, auth_failed = "stream ended", False
        try:
            connection_class = (
                http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            )
            conn = connection_class(self._host, self._port, timeout=self.connect_timeout)
            self._conn = conn
            conn.connect()
            assert conn.sock is not None
            conn.sock.settimeout(self.read_timeout)
            if self._closing.is_set():
                return
            conn.request("GET", self._path, headers=self._headers)
            response = conn.getresponse()
            if response.status != 200:
                auth_failed = response.status in (401, 403)
                reason = f"GET /event: HTTP {response.status}"
                return
            self._read(response)
        except Exception as exc:  # OSError, HTTPException, or http.client tripping over close()
            reason = f"GET /event: {type(exc).__name__}: {exc}"
        finally:
            if self._closing.is_set():
                reason = "closed by us"
            if self._conn is not None:
                self._conn.close()
            self.closed = StreamClosed(reason, auth_failed)
            self._queue.put(self.closed)
            self._ready.set()

    def _read(self, response: http.client.HTTPResponse) -> None:
        data: list[str] = []
        while not self._closing.is_set():
            raw = response.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line.startswith("data:"):
                data.append(line[5:].lstrip())
            elif not line and data:
                self._dispatch("\n".join(data))
                data = []

    def _dispatch(self, payload: str) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            logger.warning("opencode_events bad_json payload=%r", payload[:200])
            return
        if not isinstance(event, dict):
            return
        self._queue.put(event)
        if event.get("type") == "server.connected":
            self.connected = True
            self._ready.set()
