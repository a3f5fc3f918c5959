"""Pure planning logic: decompose a coding request into a DAG spec of capability-tagged tasks,
and validate and analyse DAGs (`app.planning.graph`, also used by sessions and the engine)."""

from app.planning.capabilities import KNOWN_CAPABILITIES, AgentCapability
from app.planning.complexity import (
    ComplexityLevel,
    Estimate,
    RequestProfile,
    analyze_request,
    level_for_hours,
    pert_expected,
)
from app.planning.errors import PlanningError
from app.planning.graph import (
    DEPENDENCY_TYPES,
    DagAnalysis,
    DagError,
    analyze,
    build_graph,
    build_ordered_task_graph,
    build_task_graph,
    critical_path,
    earliest_schedule,
    expected_makespan,
    find_cycle,
    to_dot,
    to_mermaid,
    topological_generations,
    topological_levels,
    validate_spec,
)
from app.planning.planner import Plan, plan
from models.enums import DependencyType

__all__ = [
    "DEPENDENCY_TYPES",
    "KNOWN_CAPABILITIES",
    "AgentCapability",
    "ComplexityLevel",
    "DagAnalysis",
    "DagError",
    "DependencyType",
    "Estimate",
    "Plan",
    "PlanningError",
    "RequestProfile",
    "analyze",
    "analyze_request",
    "build_graph",
    "build_ordered_task_graph",
    "build_task_graph",
    "critical_path",
    "earliest_schedule",
    "expected_makespan",
    "find_cycle",
    "level_for_hours",
    "pert_expected",
    "plan",
    "to_dot",
    "to_mermaid",
    "topological_generations",
    "topological_levels",
    "validate_spec",
]
