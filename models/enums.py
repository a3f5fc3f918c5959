"""Enumerations stored as lowercase strings, and the status transition tables."""

from __future__ import annotations

import enum


class SessionType(str, enum.Enum):
    PLANNING = "planning"
    EXECUTION = "execution"
    REVIEW = "review"
    DEBUG = "debug"
    INTEGRATION = "integration"


class SessionPriority(int, enum.Enum):
    CRITICAL = 0
    HIGH = 1
    MEDIUM = 2
    LOW = 3
    DEFERRED = 4


class SessionStatus(str, enum.Enum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    PARTIALLY_COMPLETED = "partially_completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    STOPPED = "stopped"
    CANCELLED = "cancelled"
    ORPHANED = "orphaned"
    DEGRADED = "degraded"


class TaskStatus(str, enum.Enum):
    PENDING = "pending"
    READY = "ready"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    BLOCKED = "blocked"
    PAUSED = "paused"
    # A task with `requires_approval` whose dependencies are done waits for a person's decision.
    AWAITING_APPROVAL = "awaiting_approval"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


class DependencyType(str, enum.Enum):
    FINISH_TO_START = "finish_to_start"
    START_TO_START = "start_to_start"
    FINISH_TO_FINISH = "finish_to_finish"
    START_TO_FINISH = "start_to_finish"


class AgentType(str, enum.Enum):
    ARCHITECT = "architect"
    IMPLEMENTER = "implementer"
    REVIEWER = "reviewer"
    DEBUGGER = "debugger"
    INTEGRATOR = "integrator"
    ORCHESTRATOR = "orchestrator"
    ANALYST = "analyst"
    OPTIMIZER = "optimizer"


class AgentCapability(enum.StrEnum):
    REQUIREMENTS_ANALYSIS = "requirements_analysis"
    SYSTEM_DESIGN = "system_design"
    ARCHITECTURE_PLANNING = "architecture_planning"
    TASK_DECOMPOSITION = "task_decomposition"
    CODE_GENERATION = "code_generation"
    TEST_GENERATION = "test_generation"
    DOCUMENTATION = "documentation"
    REFACTORING = "refactoring"
    CODE_REVIEW = "code_review"
    SECURITY_AUDIT = "security_audit"
    PERFORMANCE_ANALYSIS = "performance_analysis"
    COMPLIANCE_CHECK = "compliance_check"
    DEBUGGING = "debugging"
    TROUBLESHOOTING = "troubleshooting"
    ROOT_CAUSE_ANALYSIS = "root_cause_analysis"
    OPTIMIZATION = "optimization"
    DEPLOYMENT = "deployment"
    CONFIGURATION = "configuration"
    MONITORING = "monitoring"
    SCALING = "scaling"
    WORKFLOW_ORCHESTRATION = "workflow_orchestration"
    RESOURCE_ALLOCATION = "resource_allocation"
    CONFLICT_RESOLUTION = "conflict_resolution"
    PROGRESS_TRACKING = "progress_tracking"


class AgentDriver(str, enum.Enum):
    SHELL = "shell"
    OPENCODE = "opencode"


class AgentStatus(str, enum.Enum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    UNHEALTHY = "unhealthy"


S, T = SessionStatus, TaskStatus

SESSION_TRANSITIONS: dict[SessionStatus, frozenset[SessionStatus]] = {
    S.PENDING: frozenset({S.QUEUED, S.CANCELLED, S.ORPHANED}),
    S.QUEUED: frozenset({S.RUNNING, S.PAUSED, S.CANCELLED, S.STOPPED, S.TIMEOUT, S.ORPHANED,
                         S.COMPLETED, S.PARTIALLY_COMPLETED, S.FAILED}),
    S.RUNNING: frozenset({S.PAUSED, S.COMPLETED, S.PARTIALLY_COMPLETED, S.FAILED, S.TIMEOUT,
                          S.STOPPED, S.CANCELLED, S.ORPHANED, S.DEGRADED}),
    S.DEGRADED: frozenset({S.RUNNING, S.PAUSED, S.COMPLETED, S.PARTIALLY_COMPLETED, S.FAILED,
                           S.TIMEOUT, S.STOPPED, S.CANCELLED, S.ORPHANED}),
    S.PAUSED: frozenset({S.QUEUED, S.STOPPED, S.CANCELLED, S.TIMEOUT, S.ORPHANED}),
    S.ORPHANED: frozenset({S.QUEUED, S.CANCELLED, S.FAILED}),
    S.FAILED: frozenset({S.PENDING}),
    S.TIMEOUT: frozenset({S.PENDING}),
    S.STOPPED: frozenset({S.PENDING}),
    S.COMPLETED: frozenset(),
    S.PARTIALLY_COMPLETED: frozenset(),
    S.CANCELLED: frozenset(),
}  # fmt: skip

SESSION_ACTIVE = frozenset({S.QUEUED, S.RUNNING, S.DEGRADED})
SESSION_FINISHED = frozenset({S.COMPLETED, S.PARTIALLY_COMPLETED, S.FAILED, S.TIMEOUT,
                              S.STOPPED, S.CANCELLED})  # fmt: skip

TASK_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    T.PENDING: frozenset({T.READY, T.BLOCKED, T.PAUSED, T.CANCELLED, T.SKIPPED,
                          T.AWAITING_APPROVAL}),
    T.READY: frozenset({T.ASSIGNED, T.IN_PROGRESS, T.BLOCKED, T.PAUSED, T.PENDING, T.CANCELLED,
                        T.SKIPPED}),
    T.ASSIGNED: frozenset({T.IN_PROGRESS, T.READY, T.PENDING, T.PAUSED, T.CANCELLED, T.FAILED}),
    T.IN_PROGRESS: frozenset({T.COMPLETED, T.FAILED, T.READY, T.PENDING, T.CANCELLED,
                              T.PAUSED}),  # paused: interrupted by a spent budget
    T.BLOCKED: frozenset({T.READY, T.PENDING, T.PAUSED, T.CANCELLED, T.SKIPPED}),
    T.PAUSED: frozenset({T.PENDING, T.READY, T.CANCELLED}),
    T.AWAITING_APPROVAL: frozenset({T.PENDING, T.READY, T.PAUSED, T.FAILED, T.CANCELLED,
                                    T.SKIPPED}),
    T.FAILED: frozenset({T.PENDING}),
    T.CANCELLED: frozenset({T.PENDING}),
    T.SKIPPED: frozenset({T.PENDING}),
    T.COMPLETED: frozenset({T.PENDING}),  # restoring a checkpoint taken before it completed
}  # fmt: skip

TASK_FINISHED = frozenset({T.COMPLETED, T.FAILED, T.CANCELLED, T.SKIPPED})
