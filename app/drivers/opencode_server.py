"""Start and stop a local `opencode serve` process with an isolated home, config and state."""

from __future__ import annotations

import ctypes
import json
import logging
import os
import re
import signal
import subprocess
import threading
from collections import deque
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
LISTENING = re.compile(r"listening on (https?://\S+)")
ISOLATION_ENV = {
    "OPENCODE_DISABLE_MODELS_FETCH": "1",
    "OPENCODE_DISABLE_AUTOUPDATE": "1",
    "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
    "OPENCODE_DISABLE_SHARE": "1",
}
HEADLESS_PERMISSION = {
    "edit": "allow",
    "bash": "allow",
    "webfetch": "deny",
    "question": "deny",
    "external_directory": "deny",
    "doom_loop": "deny",
}
INSTALL_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install_opencode.sh"


class OpenCodeServerError(RuntimeError):
    """The server could not be installed or started."""


def install_opencode(script: Path = INSTALL_SCRIPT, timeout: float = 600.0) -> str:
    """Run scripts/install_opencode.sh (a no-op when cached) and return the binary's path."""
    if not script.exists():
        raise OpenCodeServerError(f"install script not found: {script}")
    try:
        done = subprocess.run(
            ["bash", str(script)], capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OpenCodeServerError(f"{script.name} failed: {exc}") from exc
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise OpenCodeServerError(
            f"{script.name} exited {done.returncode}: {done.stderr.strip()[-500:]}"
        )
    return lines[-1]


def scripted_provider_config(model_base_url: str, model: str = "scripted") -> dict[str, Any]:
    """An OpenCode config whose only provider, `fake`, is OpenAI-compatible at `model_base_url`."""
    return {
        "provider": {
            "fake": {
                "npm": "@ai-sdk/openai-compatible",
                "options": {"baseURL": model_base_url, "apiKey": "not-a-real-key"},
                "models": {
                    model: {
                        "name": "Scripted",
                        "tool_call": True,
                        "limit": {"context": 128000, "output": 4096},
                    }
                },
            }
        },
        "model": f"fake/{model}",
        "small_model": f"fake/{model}",
        "enabled_providers": ["fake"],
        "permission": dict(HEADLESS_PERMISSION),
    }


class OpenCodeServer:
    """One `opencode serve` child process; use it as a context manager or call start()/stop()."""

    def __init__(
        self,
        binary: str | os.PathLike[str],
        state_dir: str | os.PathLike[str],
        *,
        cwd: str | os.PathLike[str] | None = None,
        config: dict[str, Any] | None = None,
        port: int = 0,
        hostname: str = "127.0.0.1",
        password: str | None = None,
        username: str | None = None,
        extra_env: dict[str, str] | None = None,
        die_with_parent: bool = False,
    ) -> None:
        self.binary = str(binary)
        self.state_dir = Path(state_dir)
        self.cwd = Path(cwd) if cwd else self.state_dir / "work"
        self.config = config
        self.port = port
        self.hostname = hostname
        self.password = password
        self.username = username
        self.extra_env = dict(extra_env or {})
        self.die_with_parent = die_with_parent
        self.url: str | None = None
        self.process: subprocess.Popen[str] | None = None
        self.output: deque[str] = deque(maxlen=200)
        self._listening = threading.Event()
        self._reader: threading.Thread | None = None

    def environment(self) -> dict[str, str]:
        """The child's environment: no inherited OPENCODE_* settings, its own HOME and XDG dirs."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCODE_")}
        for name in ("home", "config", "data", "cache", "state"):
            (self.state_dir / name).mkdir(parents=True, exist_ok=True)
        env.update(
            HOME=str(self.state_dir / "home"),
            XDG_CONFIG_HOME=str(self.state_dir / "config"),
            XDG_DATA_HOME=str(self.state_dir / "data"),
            XDG_CACHE_HOME=str(self.state_dir / "cache"),
            XDG_STATE_HOME=str(self.state_dir / "state"),
            **ISOLATION_ENV,
        )
        if self.config is not None:
            env["OPENCODE_CONFIG_CONTENT"] = json.dumps(self.config)
        if self.password:
            env["OPENCODE_SERVER_PASSWORD"] = self.password
            if self.username:
                env["OPENCODE_SERVER_USERNAME"] = self.username
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 30.0) -> str:
        """Start the process and wait for its "listening on" line; return the base URL."""
        self.cwd.mkdir(parents=True, exist_ok=True)
        command = [self.binary, "serve", "--hostname", self.hostname, "--port", str(self.port)]
        self.process = subprocess.Popen(
            command,
            cwd=self.cwd,
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=_die_with_parent if self.die_with_parent else None,
        )
        self._reader = threading.Thread(
            target=self._read_output, name="opencode-serve-out", daemon=True
        )
        self._reader.start()
        if not self._listening.wait(timeout) or self.url is None:
            tail = "\n".join(list(self.output)[-20:])
            self.stop()
            raise OpenCodeServerError(f"opencode serve did not start within {timeout}s:\n{tail}")
        logger.info("opencode_server started url=%s pid=%s", self.url, self.process.pid)
        return self.url

    def _read_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line.rstrip())
            match = LISTENING.search(line)
            if match and not self._listening.is_set():
                self.url = match.group(1).rstrip("/")
                self._listening.set()
        self._listening.set()

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group, once more if ignored, then SIGKILL; wait for the exit."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, grace * 0.6), (signal.SIGTERM, grace * 0.4)):
            self._signal(sig)
            try:
                process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                logger.warning("opencode_server ignored SIGTERM pid=%s", process.pid)
        if process.poll() is None:
            self._signal(signal.SIGKILL)
            process.wait(timeout=10)
        self._signal(signal.SIGKILL)  # children left in the group (bash tool commands, npm)
        if self._reader is not None:
            self._reader.join(timeout=2)
        logger.info("opencode_server stopped pid=%s code=%s", process.pid, process.returncode)

    def _signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def __enter__(self) -> OpenCodeServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the parent exits (Linux), so tests never leak a server."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
