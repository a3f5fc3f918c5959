"""The plan templates: web service, feature, refactoring, bug fix, data migration, and more."""

from __future__ import annotations

from app.planning.capabilities import AgentCapability as Cap
from app.planning.template_model import After, Hours, Step, Template
from models.enums import DependencyType


def _after(*keys: str) -> tuple[After, ...]:
    return tuple(After(key) for key in keys)


_DOCS_STEP = Step(
    "docs", "Update the documentation", "documentation", (Cap.DOCUMENTATION,), (0.25, 0.5, 1),
    "Update user and developer documentation for the change (optional: the plan may complete "
    "without it).",
    after=(After("impl", DependencyType.START_TO_START, required=False),), optional=True,
)  # fmt: skip
# Documentation gets runnable examples only when it documents something one calls or runs.
EXAMPLE_TOPICS = frozenset({"api", "apis", "endpoint", "endpoints", "cli", "sdk", "library",
                            "client", "tutorial", "quickstart", "example", "examples", "usage",
                            "integrators", "integration", "function", "functions", "docstrings",
                            "graphql", "rest"})  # fmt: skip
_REQUIREMENTS = Step(
    "requirements", "Analyse the requirements", "requirements", (Cap.REQUIREMENTS_ANALYSIS,),
    (0.25, 0.5, 1), "Clarify scope, constraints and acceptance criteria.", split="requirements",
)  # fmt: skip


def _design(hours: Hours) -> Step:
    return Step(
        "design", "Design the solution", "design",
        (Cap.SYSTEM_DESIGN, Cap.ARCHITECTURE_PLANNING), hours,
        "Decide the structure, interfaces and data flow; record the decisions.",
        after=_after("requirements"), split="design",
    )  # fmt: skip


def _impl(hours: Hours) -> Step:
    return Step(
        "impl", "Implement the change", "implementation", (Cap.CODE_GENERATION,), hours,
        "Write the production code following the design.", after=_after("design"),
        split="components", per_component=True,
    )  # fmt: skip


FEATURE = Template(
    name="feature",
    keywords={"add": 1, "implement": 1, "feature": 2, "support": 1, "create": 1, "allow": 1,
              "enable": 1, "introduce": 1, "new": 1},
    steps=(
        _REQUIREMENTS, _design((0.5, 1, 2)), _impl((2, 4, 8)),
        Step("test", "Test the change", "testing", (Cap.TEST_GENERATION,), (0.5, 1.5, 3),
             "Write and run tests covering the acceptance criteria.", after=_after("impl"),
             split="testing"),
        _DOCS_STEP,
        Step("review", "Review the change", "review", (Cap.CODE_REVIEW,), (0.25, 0.5, 1),
             "Review the diff for correctness, clarity and consistency.",
             after=(After("test"), After("docs", required=False))),
    ),
    build="impl", design="design", fold="requirements",
    compact="Make the change end to end: code and tests for it, following the request.",
)  # fmt: skip

WEB_SERVICE = Template(
    name="web_service",
    keywords={"service": 2, "services": 2, "api": 2, "endpoint": 2, "endpoints": 2, "rest api": 2,
              "restful": 2,
              "graphql": 2, "grpc": 2, "webhook": 2, "webhooks": 2, "microservice": 2,
              "microservices": 2, "server": 1, "backend": 1, "http": 1, "route": 1},
    steps=(
        _REQUIREMENTS, _design((1, 2, 4)), _impl((3, 6, 12)),
        Step("test", "Test the service", "testing", (Cap.TEST_GENERATION,), (1, 2, 4),
             "Write and run unit and integration tests against the service.",
             after=_after("impl"), split="testing"),
        _DOCS_STEP,
        Step("deploy", "Deploy the service", "deployment", (Cap.DEPLOYMENT, Cap.CONFIGURATION),
             (0.5, 1, 2), "Configure and roll out the service, then smoke-check it.",
             after=(After("test"), After("docs", required=False)), split="deployment"),
    ),
    build="impl", design="design", deploy="deploy", fold="requirements",
    compact="Make the change to the service end to end: code and tests for it.",
)  # fmt: skip

REFACTORING = Template(
    name="refactoring",
    keywords={"refactor": 3, "refactoring": 3, "restructure": 3, "cleanup": 2, "clean up": 2,
              "decouple": 2, "extract": 2, "simplify": 2, "modularize": 2, "rename": 2,
              "deduplicate": 2, "technical debt": 2, "monolith": 2, "reorganize": 2,
              "migrate": 1, "migration": 1, "framework": 2, "upgrade": 2, "flask": 2,
              "fastapi": 2, "django": 2, "sqlalchemy": 1, "typescript": 1},
    lead_verbs=frozenset({"refactor", "restructure", "extract", "simplify", "rename", "split",
                          "decouple", "modularize", "reorganize", "clean"}),
    steps=(
        Step("analysis", "Analyse the current code", "analysis",
             (Cap.CODE_REVIEW, Cap.ARCHITECTURE_PLANNING), (0.5, 1, 2),
             "Map the code to change, its callers and its tests; note the risks."),
        Step("plan", "Plan the refactoring", "planning",
             (Cap.TASK_DECOMPOSITION, Cap.ARCHITECTURE_PLANNING), (0.5, 1, 2),
             "Order the changes into small behaviour-preserving steps.", after=_after("analysis")),
        Step("execute", "Execute the refactoring", "execution", (Cap.REFACTORING,), (2, 4, 8),
             "Apply the planned steps without changing behaviour.", after=_after("plan"),
             split="components", per_component=True),
        Step("verify", "Verify behaviour is unchanged", "verification",
             (Cap.TEST_GENERATION, Cap.CODE_REVIEW), (0.5, 1, 2),
             "Run and extend the tests; review the diff for behaviour changes.",
             after=_after("execute"), split="testing"),
    ),
    build="execute", design="plan", fold="analysis",
    compact="Apply the change without changing behaviour; keep the tests passing.",
)  # fmt: skip

BUG_FIX = Template(
    name="bug_fix",
    keywords={"bug": 3, "bugs": 3, "fix": 2, "fixes": 2, "crash": 3, "crashes": 3,
              "exception": 2, "traceback": 2, "broken": 2, "regression": 2, "failing": 2,
              "fails": 2, "error": 1, "errors": 1, "incorrect": 1, "wrong": 1, "deadlock": 2,
              "root cause": 2, "issue": 1},
    lead_verbs=frozenset({"fix", "debug", "repair", "resolve"}),
    steps=(
        Step("reproduce", "Reproduce the bug", "reproduction",
             (Cap.DEBUGGING, Cap.TEST_GENERATION), (0.25, 0.5, 1.5),
             "Write a failing test or script that reproduces the reported behaviour."),
        Step("root-cause", "Find the root cause", "diagnosis",
             (Cap.ROOT_CAUSE_ANALYSIS, Cap.DEBUGGING), (0.5, 1, 3),
             "Trace the failure to its root cause; explain it.", after=_after("reproduce")),
        Step("fix", "Fix the bug", "fix", (Cap.DEBUGGING, Cap.CODE_GENERATION), (0.5, 1, 2),
             "Fix the root cause with the smallest safe change.", after=_after("root-cause"),
             split="components"),
        Step("regression-test", "Add a regression test", "testing", (Cap.TEST_GENERATION,),
             (0.25, 0.5, 1), "Keep the reproduction as a regression test; run the suite.",
             after=_after("fix")),
    ),
    build="fix", size_hours=(1, 2, 4),
    compact="Reproduce the bug with a failing test, fix its root cause with the smallest safe "
    "change, and keep the test as a regression test.",
)  # fmt: skip

DATA_MIGRATION = Template(
    name="data_migration",
    keywords={"migrate": 1, "migration": 1, "backfill": 3, "cutover": 3, "etl": 2, "data": 1,
              "database": 1, "table": 2, "tables": 2, "rows": 2, "records": 2, "column": 2,
              "columns": 2, "postgres": 2, "postgresql": 2, "mysql": 2, "mongodb": 2,
              "dynamodb": 2, "data migration": 2},
    lead_verbs=frozenset({"backfill"}),
    requires_any=frozenset({"migrate", "migrating", "migration", "backfill", "cutover", "etl"}),
    steps=(
        Step("assess", "Assess the data to migrate", "analysis",
             (Cap.REQUIREMENTS_ANALYSIS, Cap.SYSTEM_DESIGN), (0.5, 1, 2),
             "Inventory the source data, volumes, constraints and consumers."),
        Step("design", "Design the migration", "design", (Cap.SYSTEM_DESIGN,), (0.5, 1, 2),
             "Define the mapping, batching, ordering and downtime budget.",
             after=_after("assess"), split="design"),
        Step("migrate", "Write the migration", "implementation", (Cap.CODE_GENERATION,),
             (1, 3, 6), "Write idempotent, resumable migration scripts.", after=_after("design"),
             split="components", per_component=True),
        Step("rollback", "Write the rollback", "implementation", (Cap.CODE_GENERATION,),
             (0.5, 1, 2), "Write and document the rollback path.", after=_after("design")),
        Step("dry-run", "Dry-run on a copy", "testing", (Cap.TEST_GENERATION, Cap.TROUBLESHOOTING),
             (0.5, 1, 3), "Run migration and rollback on a production-like copy; compare counts.",
             after=_after("migrate", "rollback")),
        Step("cutover", "Cut over", "deployment", (Cap.DEPLOYMENT,), (0.5, 1, 2),
             "Run the migration in production within the agreed window.",
             after=_after("dry-run"), split="deployment"),
        Step("verify", "Verify the migrated data", "verification",
             (Cap.MONITORING, Cap.TEST_GENERATION), (0.25, 0.5, 1),
             "Check integrity, counts and application health after cutover.",
             after=_after("cutover")),
    ),
    build="migrate", design="design", deploy="cutover", fold="assess",
    compact="Write the idempotent migration with its rollback, run both on a copy, then apply.",
)  # fmt: skip

DOCUMENTATION = Template(
    name="documentation",
    keywords={"document": 3, "documentation": 3, "docs": 3, "readme": 3, "guide": 2,
              "tutorial": 2, "docstring": 2, "docstrings": 2, "runbook": 2, "changelog": 2,
              "wiki": 2, "api reference": 2, "explain": 1},
    lead_verbs=frozenset({"document"}),
    steps=(
        Step("audit", "Audit the existing docs", "analysis", (Cap.REQUIREMENTS_ANALYSIS,),
             (0.25, 0.5, 1), "Find what is missing, outdated or wrong, and who reads it."),
        Step("outline", "Outline the documentation", "planning", (Cap.DOCUMENTATION,),
             (0.25, 0.5, 1), "Agree the structure and the sections to write.",
             after=_after("audit")),
        Step("write", "Write the documentation", "documentation", (Cap.DOCUMENTATION,),
             (1, 2, 4), "Write the sections from the outline.", after=_after("outline"),
             per_component=True),
        Step("examples", "Write and check examples", "documentation",
             (Cap.DOCUMENTATION,), (0.25, 0.75, 1.5),
             "Write runnable examples and check that they work.", after=_after("outline"),
             when=EXAMPLE_TOPICS),
        Step("review", "Review the documentation", "review",
             (Cap.CODE_REVIEW, Cap.DOCUMENTATION), (0.25, 0.5, 1),
             "Check accuracy against the code and readability.",
             after=_after("write", "examples")),
    ),
    build="write", fold="audit",
    compact="Make the documentation change and check it against the code.",
    review="Check accuracy against the code and readability.", changes_code=False,
)  # fmt: skip

INFRASTRUCTURE = Template(
    name="infrastructure",
    keywords={"ci": 3, "cd": 2, "pipeline": 2, "github actions": 3, "docker": 2,
              "dockerfile": 3, "kubernetes": 3, "k8s": 3, "helm": 3, "terraform": 3,
              "infrastructure": 3, "ansible": 3, "nginx": 2, "container": 2, "containers": 2,
              "autoscaling": 2, "load balancer": 2, "staging": 1, "deploy": 1, "deployment": 1,
              "vault": 3, "secrets manager": 3, "rotate": 2, "sentry": 2, "alerting": 2,
              "prometheus": 2, "grafana": 2},
    lead_verbs=frozenset({"deploy", "provision", "containerize", "dockerize", "configure",
                          "rotate"}),
    steps=(
        Step("assess", "Assess the current setup", "analysis",
             (Cap.REQUIREMENTS_ANALYSIS, Cap.CONFIGURATION), (0.25, 0.5, 1),
             "Inventory the current environments, pipelines and constraints."),
        Step("design", "Design the infrastructure change", "design",
             (Cap.ARCHITECTURE_PLANNING,), (0.5, 1, 2),
             "Decide the target setup, secrets handling and rollback.", after=_after("assess")),
        Step("configure", "Write the configuration", "implementation",
             (Cap.CONFIGURATION, Cap.DEPLOYMENT), (1, 2, 4),
             "Write the pipeline, container and infrastructure code.", after=_after("design"),
             split="components", per_component=True),
        Step("validate", "Validate in staging", "testing",
             (Cap.CONFIGURATION, Cap.TROUBLESHOOTING), (0.5, 1, 2),
             "Apply to a staging environment and fix what breaks.", after=_after("configure")),
        Step("rollout", "Roll out", "deployment", (Cap.DEPLOYMENT,), (0.25, 0.5, 1.5),
             "Apply to production.", after=_after("validate")),
        Step("monitor", "Monitor the rollout", "monitoring", (Cap.MONITORING,), (0.25, 0.5, 1),
             "Watch dashboards and alerts; confirm health.", after=_after("rollout")),
    ),
    build="configure", design="design", deploy="rollout", fold="assess",
    compact="Make the configuration change and validate it before it is applied.",
)  # fmt: skip

PERFORMANCE = Template(
    name="performance",
    keywords={"slow": 3, "slower": 3, "performance": 3, "latency": 3, "optimize": 3,
              "optimise": 3, "bottleneck": 3, "throughput": 2, "faster": 2, "speed": 2,
              "profiling": 2, "benchmark": 2, "cpu": 2, "memory": 1},
    lead_verbs=frozenset({"optimize", "optimise", "speed", "profile"}),
    steps=(
        Step("baseline", "Measure the baseline", "analysis", (Cap.PERFORMANCE_ANALYSIS,),
             (0.5, 1, 2), "Profile and record baseline benchmarks."),
        Step("bottlenecks", "Find the bottlenecks", "diagnosis",
             (Cap.PERFORMANCE_ANALYSIS, Cap.ROOT_CAUSE_ANALYSIS), (0.5, 1, 2),
             "Identify where the time or memory goes.", after=_after("baseline")),
        Step("optimize", "Optimise", "implementation", (Cap.OPTIMIZATION,), (1, 3, 6),
             "Remove the bottlenecks without changing behaviour.", after=_after("bottlenecks"),
             split="components", per_component=True),
        Step("benchmark", "Benchmark the result", "verification",
             (Cap.PERFORMANCE_ANALYSIS, Cap.TEST_GENERATION), (0.5, 1, 2),
             "Re-run the benchmarks and the tests; report the gain.", after=_after("optimize")),
    ),
    build="optimize", fold="baseline",
    compact="Measure, remove the bottleneck without changing behaviour, and measure again.",
)  # fmt: skip

TEST_SUITE = Template(
    name="test_suite",
    keywords={"tests": 2, "test": 1, "testing": 1, "coverage": 3, "unit tests": 2,
              "integration tests": 2, "e2e": 2, "pytest": 2, "test suite": 3, "flaky": 2},
    lead_verbs=frozenset({"test"}),
    steps=(
        Step("coverage", "Find the coverage gaps", "analysis",
             (Cap.TEST_GENERATION, Cap.CODE_REVIEW), (0.25, 0.5, 1),
             "Measure coverage and list untested behaviour."),
        Step("write-tests", "Write the tests", "testing", (Cap.TEST_GENERATION,), (1, 2, 4),
             "Write tests for the listed behaviour.", after=_after("coverage"),
             split="components", per_component=True),
        Step("review", "Review the tests", "review", (Cap.CODE_REVIEW,), (0.25, 0.5, 1),
             "Check that the tests assert behaviour and are not flaky.",
             after=_after("write-tests")),
    ),
    build="write-tests",
    compact="Write the tests for the named behaviour and run them.",
    review="Check that the tests assert behaviour and are not flaky.",
)  # fmt: skip

SECURITY_AUDIT = Template(
    name="security_audit",
    keywords={"audit": 3, "vulnerability": 3, "vulnerabilities": 3, "pentest": 3,
              "penetration test": 3, "threat model": 3, "cve": 3, "owasp": 3,
              "security review": 3, "harden": 3, "hardening": 3, "injection": 2, "xss": 2,
              "csrf": 2, "secrets": 1},
    lead_verbs=frozenset({"audit", "harden"}),
    steps=(
        Step("threat-model", "Model the threats", "analysis",
             (Cap.SECURITY_AUDIT, Cap.ARCHITECTURE_PLANNING), (0.5, 1, 2),
             "List assets, trust boundaries and likely attacks."),
        Step("audit", "Audit the code", "review", (Cap.SECURITY_AUDIT, Cap.CODE_REVIEW),
             (1, 2, 4), "Review the code and configuration for the modelled threats.",
             after=_after("threat-model")),
        Step("remediate", "Remediate the findings", "fix", (Cap.CODE_GENERATION,), (1, 2, 4),
             "Fix the findings, most severe first.", after=_after("audit"),
             split="components", per_component=True),
        Step("verify", "Verify the fixes", "verification",
             (Cap.SECURITY_AUDIT, Cap.COMPLIANCE_CHECK), (0.5, 1, 2),
             "Re-test every finding and check compliance requirements.",
             after=_after("remediate")),
    ),
    build="remediate",
    compact="Fix the named weakness and check that it is closed.",
)  # fmt: skip

# Review-only requests: chosen by intent (app/planning/intent.py), never by keyword score.
CODE_REVIEW = Template(
    name="code_review",
    keywords={},
    steps=(
        Step("scope", "Scope the review", "analysis", (Cap.CODE_REVIEW,), (0.25, 0.5, 1),
             "Read the code under review, its tests and history; agree what to check."),
        Step("review", "Review the code", "review", (Cap.CODE_REVIEW,), (0.5, 1, 2.5),
             "Review for correctness, design, tests and maintainability; change nothing.",
             after=_after("scope"), split="components", per_component=True),
        Step("report", "Report the findings", "documentation",
             (Cap.DOCUMENTATION, Cap.CODE_REVIEW), (0.25, 0.5, 1),
             "Write up the findings by severity, with suggested fixes.", after=_after("review")),
    ),
    build="review",
    size_hours=(0.25, 0.75, 2),
    compact="Review the code as asked and write up the findings by severity; change nothing.",
    changes_code=False,
)  # fmt: skip

SECURITY_REVIEW = Template(
    name="security_review",
    keywords={},
    steps=(
        Step("threat-model", "Model the threats", "analysis",
             (Cap.SECURITY_AUDIT, Cap.ARCHITECTURE_PLANNING), (0.5, 1, 2),
             "List assets, trust boundaries and likely attacks."),
        Step("audit", "Audit the code", "review", (Cap.SECURITY_AUDIT, Cap.CODE_REVIEW),
             (1, 2, 4), "Review the code and configuration for the modelled threats; change "
             "nothing.", after=_after("threat-model"), split="components", per_component=True),
        Step("report", "Report the findings", "documentation",
             (Cap.DOCUMENTATION, Cap.SECURITY_AUDIT), (0.25, 0.5, 1),
             "Write up each finding with its severity, evidence and suggested fix.",
             after=_after("audit")),
    ),
    build="audit",
    compact="Audit the code as asked for security flaws and report them; change nothing.",
    changes_code=False,
)  # fmt: skip

# Order breaks score ties: the more specific template wins; `feature` is the fallback.
TEMPLATES: tuple[Template, ...] = (
    BUG_FIX, SECURITY_AUDIT, DATA_MIGRATION, PERFORMANCE, REFACTORING, INFRASTRUCTURE,
    DOCUMENTATION, TEST_SUITE, WEB_SERVICE, FEATURE,
)  # fmt: skip
