"""Drivers do a task's work as a given agent; `get_driver` picks one by the agent's driver name."""

from __future__ import annotations

from .base import Driver
from .shell import ShellDriver


def get_driver(name: str) -> Driver:
    """The driver registered under `name`."""
    if name == "shell":
        return ShellDriver()
    if name == "integration":
        from .integration import IntegrationDriver

        return IntegrationDriver()
    if name == "opencode":
        from .opencode import OpenCodeDriver

        return OpenCodeDriver()
    raise ValueError(f"Unknown driver '{name}'.")
