"""How many items the API's lists accept: every list a client sends has a maximum.

The body size (`MAX_CONTENT_LENGTH`) and JSON nesting (`JSON_MAX_DEPTH`) limits are settings
(`app/config.py`); these are fixed. A 10,000-task DAG (bench/planning.py's largest) fits them all.
"""

from models.enums import AgentCapability

MAX_TASKS = 10_000  # tasks per DAG
MAX_DEPENDENCIES = 1_000  # depends_on entries per task (a wider fan-in goes through a join task)
MAX_DAG_DEPENDENCIES = 100_000  # depends_on entries of all tasks of a DAG together
MAX_TAGS = 50  # tags per session
MAX_CAPABILITIES = len(AgentCapability)  # capabilities per agent or per task
MAX_TECHNOLOGIES = 100  # preferred or avoided technologies per agent
MAX_TASK_TECHNOLOGIES = 20  # technologies per task
MAX_TECHNOLOGY_LENGTH = 100  # characters per technology name


def at_most(limit: int, what: str) -> str:
    """The error message of a list over its limit."""
    return f"At most {limit} {what}."
