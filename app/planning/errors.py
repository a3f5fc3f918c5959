"""The one error type the planner raises for bad requests and invalid DAG specs."""

from __future__ import annotations

from collections.abc import Iterable


class PlanningError(ValueError):
    """A request or DAG spec the planner cannot accept; `errors` lists every problem found."""

    def __init__(self, message: str, errors: Iterable[str] = ()) -> None:
        self.errors: list[str] = list(errors) or [message]
        super().__init__(message)
