"""The 24 capabilities an agent can offer and a planned task can require."""

from __future__ import annotations

from enum import StrEnum


class AgentCapability(StrEnum):
    """A skill a task needs and an agent advertises; values are stored as-is."""

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


KNOWN_CAPABILITIES: frozenset[str] = frozenset(capability.value for capability in AgentCapability)
