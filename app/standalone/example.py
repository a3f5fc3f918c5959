"""The example that `make run` submits: agents and a DAG with a parallel branch and a join."""

EXAMPLE_AGENTS = [
    {
        "name": "architect-shell",
        "type": "architect",
        "driver": "shell",
        "capabilities": ["requirements_analysis", "system_design", "architecture_planning"],
        "capacity": 2,
    },
    {
        "name": "implementer-shell",
        "type": "implementer",
        "driver": "shell",
        "capabilities": ["code_generation", "refactoring", "documentation"],
        "capacity": 4,
    },
    {
        "name": "tester-shell",
        "type": "reviewer",
        "driver": "shell",
        "capabilities": ["test_generation", "code_review", "deployment"],
        "capacity": 2,
    },
]


def _write(path: str, text: str, pause: float = 1.0) -> str:
    return (
        f"sleep {pause}; mkdir -p $(dirname {path}); printf '%s\\n' '{text}' > {path}; cat {path}"
    )


EXAMPLE_SESSION = {
    "title": "Example: a greeting service",
    "prompt": "Build a tiny greeting service with an API, a CLI and docs, then test it.",
    "tags": ["example"],
    "dag": {
        "tasks": [
            {
                "key": "requirements",
                "title": "Write down the requirements",
                "command": _write("docs/requirements.md", "Greet a user by name over HTTP."),
                "required_capabilities": ["requirements_analysis"],
            },
            {
                "key": "design",
                "title": "Design the module layout",
                "command": _write("docs/design.md", "greet.py: greet(name) -> str"),
                "required_capabilities": ["system_design"],
                "depends_on": ["requirements"],
            },
            {
                "key": "library",
                "title": "Implement greet()",
                "command": _write(
                    "greet.py", 'def greet(name):\n    return f"Hello, {name}!"', pause=2
                ),
                "required_capabilities": ["code_generation"],
                "depends_on": ["design"],
            },
            {
                "key": "cli",
                "title": "Add a command line entry point",
                "command": _write(
                    "cli.py", "import sys\nfrom greet import greet\nprint(greet(sys.argv[1]))", 2
                ),
                "required_capabilities": ["code_generation"],
                "depends_on": ["design"],
            },
            {
                "key": "docs",
                "title": "Document usage",
                "command": _write("README.md", "Run: python cli.py World", pause=1.5),
                "required_capabilities": ["documentation"],
                "depends_on": ["design"],
            },
            {
                "key": "test",
                "title": "Test the CLI end to end",
                "command": "sleep 1; python3 cli.py World | grep -x 'Hello, World!'",
                "required_capabilities": ["test_generation"],
                "depends_on": ["library", "cli"],
            },
            {
                "key": "release",
                "title": "Package the release",
                "command": (
                    "sleep 0.5; tar czf release.tgz greet.py cli.py README.md && ls -l release.tgz"
                ),
                "required_capabilities": ["deployment"],
                "depends_on": ["test", "docs"],
            },
        ]
    },
}
