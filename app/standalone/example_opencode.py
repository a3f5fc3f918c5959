"""The OpenCode half of `make run`'s example: a real `opencode serve` driven by the scripted
model server (or by the provider of `ORCH_OPENCODE_CONFIG`), agents that use it, and a session
whose agents edit a real git repository in their own worktrees before an integration merge."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from app.drivers.opencode_server import (
    OpenCodeServer,
    OpenCodeServerError,
    install_opencode,
    scripted_provider_config,
)
from app.workspaces import ensure_repository

from .scripted_model import ScriptedModelServer


@dataclass
class OpenCodeBackend:
    """The OpenCode server (and scripted model) started for the example."""

    server: OpenCodeServer
    model: ScriptedModelServer | None
    model_name: str

    def stop(self) -> None:
        """Stop the OpenCode server, then the model server."""
        self.server.stop()
        if self.model is not None:
            self.model.stop()


def start_backend(home: Path) -> OpenCodeBackend:
    """Install (once, cached in .cache/) and start OpenCode; raise OpenCodeServerError."""
    binary = install_opencode()
    config_file = os.environ.get("ORCH_OPENCODE_CONFIG")
    model = None
    if config_file:
        config = json.loads(Path(config_file).read_text())
        model_name = config.get("model", "")
    else:
        model = ScriptedModelServer().start()
        config = scripted_provider_config(model.base_url)
        model_name = config["model"]
    server = OpenCodeServer(binary, home / "opencode", config=config, die_with_parent=True)
    try:
        server.start(timeout=60)
    except OpenCodeServerError:
        if model is not None:
            model.stop()
        raise
    return OpenCodeBackend(server, model, model_name)


def example_repository(home: Path) -> Path:
    """A git repository for the example, with a first commit."""
    repo = ensure_repository(home / "example-repo")
    if not (repo / "README.md").exists():
        (repo / "README.md").write_text("# Greeting service\n")
        identity = ["-c", "user.name=Orchestrator", "-c", "user.email=orchestrator@localhost"]
        subprocess.run(["git", "add", "README.md"], cwd=repo, check=True)
        subprocess.run(["git", *identity, "commit", "-qm", "Start the greeting service"],
                       cwd=repo, check=True)  # fmt: skip
    return repo


def opencode_agents(backend: OpenCodeBackend) -> list[dict]:
    """Two OpenCode agents on the example's server, and a shell agent for tests."""
    common = {"driver": "opencode", "endpoint": backend.server.url, "model": backend.model_name}
    return [
        {**common, "name": "opencode-architect", "type": "architect", "capacity": 1,
         "capabilities": ["requirements_analysis", "system_design", "documentation"]},
        {**common, "name": "opencode-implementer", "type": "implementer", "capacity": 3,
         "capabilities": ["code_generation", "documentation", "refactoring"]},
        {"name": "shell-tester", "type": "reviewer", "driver": "shell", "capacity": 2,
         "capabilities": ["test_generation", "deployment"]},
    ]  # fmt: skip


def opencode_session(repo: Path) -> dict:
    """Design, three parallel OpenCode edits, an integration merge, then a test and a release."""

    def write(path: str, text: str) -> str:
        return f"WRITE_FILE:{path}:{text}"

    return {
        "title": "Example: a greeting service, written by OpenCode agents",
        "prompt": "Build a tiny greeting service with a library, a CLI and docs, then test it.",
        "tags": ["example", "opencode"],
        "workdir": str(repo),
        "dag": {"tasks": [
            {"key": "design", "title": "Design the module layout",
             "description": write("DESIGN.md", "greet.py: greet(name) -> str\\ncli.py: prints it"),
             "required_capabilities": ["system_design"]},
            {"key": "library", "title": "Implement greet()", "depends_on": ["design"],
             "description": write("greet.py", "def greet(name):\\n    return f'Hello, {name}!'"),
             "required_capabilities": ["code_generation"]},
            {"key": "cli", "title": "Add the command line", "depends_on": ["design"],
             "description": write("cli.py", "import sys\\nfrom greet import greet\\n\\n"
                                             "print(greet(sys.argv[1]))"),
             "required_capabilities": ["code_generation"]},
            {"key": "docs", "title": "Document usage", "depends_on": ["design"],
             "description": write("USAGE.md", "Run: python3 cli.py World"),
             "required_capabilities": ["documentation"]},
            {"key": "integrate", "title": "Merge the branches", "action": "integrate",
             "depends_on": ["library", "cli", "docs"]},
            {"key": "test", "title": "Test the CLI", "depends_on": ["integrate"],
             "command": "python3 cli.py World | grep -x 'Hello, World!'",
             "required_capabilities": ["test_generation"]},
            {"key": "release", "title": "Package the release", "depends_on": ["test"],
             "command": "git archive -o release.tar HEAD && ls -l release.tar",
             "required_capabilities": ["deployment"]},
        ]},
    }  # fmt: skip
