"""SQLAlchemy models; importing this package registers every table on `Base.metadata`."""

from .agents import Agent
from .base import Base
from .history import Checkpoint, SessionEvent
from .sessions import InvalidTransition, Session, SessionTask, TaskDependency

__all__ = [
    "Agent",
    "Base",
    "Checkpoint",
    "InvalidTransition",
    "Session",
    "SessionEvent",
    "SessionTask",
    "TaskDependency",
]
