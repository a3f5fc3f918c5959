"""SQLAlchemy models; importing this package registers every table on `Base.metadata`."""

from .agents import Agent
from .approvals import Approval, ApprovalKind, ApprovalStatus
from .base import Base
from .contexts import Context, ContextVersion
from .history import Checkpoint, SessionEvent
from .maintenance import BeatJobRun
from .security import ApiToken
from .sessions import InvalidTransition, Session, SessionTask, TaskDependency

__all__ = [
    "Agent",
    "Approval",
    "ApprovalKind",
    "ApprovalStatus",
    "ApiToken",
    "Base",
    "BeatJobRun",
    "Checkpoint",
    "Context",
    "ContextVersion",
    "InvalidTransition",
    "Session",
    "SessionEvent",
    "SessionTask",
    "TaskDependency",
]
