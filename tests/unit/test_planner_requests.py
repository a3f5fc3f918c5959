"""A table of realistic requests and the DAG structure each one must be planned into."""

import re
from dataclasses import dataclass
from itertools import pairwise

import networkx as nx
import pytest

from app.planning import (
    DEPENDENCY_TYPES,
    KNOWN_CAPABILITIES,
    ComplexityLevel,
    critical_path,
    plan,
    validate_spec,
)

SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


@dataclass(frozen=True)
class Case:
    """A request and the structure its plan must have."""

    prompt: str
    template: str
    tasks: tuple[int, int]
    phases: frozenset[str]
    last: str
    parallel: tuple[tuple[str, str], ...] = ()
    rules: frozenset[str] = frozenset()


def case(prompt, template, tasks, phases, last, parallel=(), rules=()):
    return pytest.param(
        Case(prompt, template, tasks, frozenset(phases.split()), last, parallel, frozenset(rules)),
        id=prompt[:48],
    )


WEB = "requirements design implementation testing deployment"
FEATURE = "requirements design implementation testing review"
BUG = "reproduction diagnosis fix testing"
REFACTOR = "analysis planning execution verification"
MIGRATION = "analysis design implementation testing deployment verification"
DOCS = "analysis planning documentation review"
INFRA = "analysis design implementation testing deployment monitoring"
PERF = "analysis diagnosis implementation verification"

CASES = [
    # --- features and web services
    case("Add OAuth login to the user service", "web_service", (8, 10), WEB + " review",
         "deploy", (("security-review", "test"), ("impl-1", "impl-2")), {"auth"}),
    case("Build a REST API for managing customer invoices with a Postgres database",
         "web_service", (9, 12), WEB + " integration", "deploy",
         (("impl-api", "impl-data"), ("impl-payments", "impl-api")), {"database"}),
    case("Create a React dashboard page that shows weekly sales charts", "feature", (7, 9),
         FEATURE + " documentation", "review", (("impl-1", "impl-2"), ("docs", "test")), {"ui"}),
    case("Add a settings page with a form to update the user's email address, backed by a new "
         "API endpoint", "web_service", (10, 13), WEB, "deploy",
         (("impl-backend-api", "impl-frontend-1"), ("impl-backend-notifications",
                                                    "impl-backend-api")), {"ui"}),
    case("Add rate limiting to the public API", "web_service", (7, 9), WEB, "deploy",
         (("impl-1", "impl-2"), ("docs", "test"))),
    case("Add CSV export of invoices to the admin dashboard", "feature", (8, 11), FEATURE,
         "review", (("impl-frontend", "impl-backend-reporting"),
                    ("impl-backend-reporting", "impl-backend-payments")), {"ui"}),
    case("Implement real-time notifications over WebSockets for new chat messages", "feature",
         (7, 9), FEATURE, "review", (("impl-1", "impl-2"),)),
    case("Add JWT authentication and role-based permissions to the GraphQL API", "web_service",
         (8, 10), WEB + " review integration", "deploy",
         (("impl-auth", "impl-api"), ("security-review", "test")), {"auth"}),
    case("Add an author field to the blog post model and show it on the article page",
         "feature", (7, 9), FEATURE, "review",
         (("impl-backend", "impl-frontend"), ("schema", "impl-frontend")), {"ui", "database"}),
    case("Create a microservice that sends order confirmation emails from a Kafka queue",
         "web_service", (11, 17), WEB, "deploy",
         (("service-config", "impl-notifications-1"), ("impl-notifications-1", "impl-jobs-1")),
         {"microservice"}),
    case("Add dark mode to the settings screen", "feature", (7, 9), FEATURE, "review",
         (("impl-1", "impl-2"),), {"ui"}),
    case("Build a dashboard page with a REST API and a Postgres database, with login and "
         "permissions, split into microservices", "web_service", (15, 24),
         WEB + " review integration", "deploy",
         (("impl-backend-api", "impl-frontend-1"), ("security-review", "test"),
          ("service-config", "schema")), {"ui", "database", "microservice", "auth"}),
    # --- bug fixes
    case("Fix the crash when uploading an empty CSV file", "bug_fix", (4, 4), BUG,
         "regression-test"),
    case("Fix the login redirect loop after a password reset", "bug_fix", (5, 5),
         BUG + " review", "regression-test", rules={"auth"}),
    case("The checkout page throws a TypeError when the cart is empty; fix it", "bug_fix",
         (4, 4), BUG, "regression-test"),
    case("Debug the intermittent deadlock in the Celery worker queue", "bug_fix", (4, 4), BUG,
         "regression-test"),
    case("Orders placed after midnight get the wrong date; find the root cause and fix it",
         "bug_fix", (4, 4), BUG, "regression-test"),
    # --- refactors
    case("Refactor the billing module to remove duplicated invoice logic", "refactoring",
         (6, 6), REFACTOR + " integration", "verify", (("execute-1", "execute-2"),)),
    case("Extract the email sending code into a separate notifications package", "refactoring",
         (6, 6), REFACTOR, "verify", (("execute-1", "execute-2"),)),
    case("Split the monolith into separate user, order and inventory microservices",
         "refactoring", (7, 8), REFACTOR + " design", "verify", (("execute-1", "execute-2"),),
         {"microservice"}),
    case("Migrate the app from Flask to FastAPI", "refactoring", (6, 6), REFACTOR, "verify",
         (("execute-1", "execute-2"),)),
    case("Rename the confusing variables in utils.py", "refactoring", (4, 4), REFACTOR,
         "verify"),
    # --- data migrations
    case("Migrate the orders table from MySQL to PostgreSQL with zero-downtime",
         "data_migration", (8, 10), MIGRATION, "verify",
         (("migrate-1", "rollback"), ("migrate-1", "migrate-2"))),
    case("Backfill the new last_login_at column for all existing users", "data_migration",
         (7, 7), MIGRATION, "verify", (("migrate", "rollback"),)),
    # --- documentation
    case("Document the public REST API endpoints in the README", "documentation", (5, 5), DOCS,
         "review", (("write", "examples"),)),
    case("Write a user guide for the build system", "documentation", (5, 5), DOCS, "review",
         (("write", "examples"),)),
    case("Add docstrings to every function in the payments package", "documentation", (5, 5),
         DOCS, "review", (("write", "examples"),)),
    case("Document the bug triage process for the support team", "documentation", (5, 5), DOCS,
         "review", (("write", "examples"),)),
    # --- infrastructure and CI
    case("Set up a GitHub Actions CI pipeline that runs the tests and builds a Docker image",
         "infrastructure", (6, 6), INFRA, "monitor"),
    case("Deploy the service to Kubernetes with Helm charts and autoscaling", "infrastructure",
         (6, 6), INFRA, "monitor"),
    case("Configure TLS certificates and secrets for the production Kubernetes cluster; "
         "security is critical", "infrastructure", (7, 7), INFRA + " review", "monitor",
         (("security-review", "validate"), ("security-review", "rollout")), {"auth"}),
    case("Containerize the Django app with a multi-stage Dockerfile", "infrastructure", (6, 6),
         INFRA, "monitor"),
    # --- performance, tests, security
    case("The search endpoint is slow; reduce its p95 latency", "performance", (6, 6),
         PERF + " integration", "benchmark", (("optimize-api", "optimize-search"),)),
    case("Optimize memory usage of the nightly report export job", "performance", (4, 4), PERF,
         "benchmark"),
    case("Increase test coverage of the billing module to 90% with pytest", "test_suite",
         (3, 3), "analysis testing review", "review"),
    case("Write integration tests for the Redis cache layer and the Celery workers",
         "test_suite", (3, 3), "analysis testing review", "review"),
    case("Audit the authentication flow for OWASP Top 10 vulnerabilities", "security_audit",
         (4, 4), "analysis review fix verification", "verify"),
    case("Harden the Nginx configuration against XSS and CSRF attacks", "security_audit",
         (4, 4), "analysis review fix verification", "verify"),
]  # fmt: skip


def _graph(result):
    return validate_spec(result.to_spec())


def _sinks(graph):
    return {key for key in graph if graph.out_degree(key) == 0}


def test_the_table_has_at_least_30_requests():
    assert len(CASES) >= 30


@pytest.mark.parametrize("expected", CASES)
def test_request_yields_the_expected_structure(expected):
    result = plan(expected.prompt)
    graph = _graph(result)
    keys = [task["key"] for task in result.tasks]
    phases = {task["phase"] for task in result.tasks}

    assert result.template == expected.template, result.reasons
    low, high = expected.tasks
    assert low <= len(keys) <= high, keys
    assert expected.phases <= phases, phases
    assert _sinks(graph) == {expected.last}
    for first, second in expected.parallel:
        assert first in graph and second in graph, keys
        assert not nx.has_path(graph, first, second), (first, second)
        assert not nx.has_path(graph, second, first), (second, first)
    assert set(result.rule_by_task.values()) == expected.rules, result.reasons


@pytest.mark.parametrize("expected", CASES)
def test_every_plan_is_a_valid_acyclic_spec(expected):
    result = plan(expected.prompt)
    graph = _graph(result)
    assert nx.is_directed_acyclic_graph(graph)
    assert result.planner == "heuristic"
    assert result.reasons and result.reasons[0].startswith("template ")
    keys = [task["key"] for task in result.tasks]
    assert len(keys) == len(set(keys))
    for task in result.tasks:
        assert SLUG.match(task["key"]), task["key"]
        assert task["title"] and task["description"] and task["phase"]
        assert expected.prompt in task["description"]
        assert task["required_capabilities"]
        assert set(task["required_capabilities"]) <= KNOWN_CAPABILITIES
        assert all(dep["type"] in DEPENDENCY_TYPES for dep in task["depends_on"])
        assert all(isinstance(dep["required"], bool) for dep in task["depends_on"])
        estimate = task["estimate"]
        assert estimate["optimistic_hours"] <= estimate["likely_hours"]
        assert estimate["likely_hours"] <= estimate["pessimistic_hours"]
        assert ComplexityLevel(estimate["level"]) <= ComplexityLevel.MODERATE


@pytest.mark.parametrize("expected", CASES)
def test_plan_figures_are_consistent(expected):
    result = plan(expected.prompt)
    graph = _graph(result)
    hours = {task["key"]: task["estimate"]["expected_hours"] for task in result.tasks}
    path, makespan = critical_path(graph)
    assert result.critical_path == path
    assert result.expected_makespan_hours == pytest.approx(makespan, abs=1e-3)
    assert all(graph.has_edge(a, b) for a, b in pairwise(path))
    assert path[-1] == expected.last
    assert max(hours.values()) <= result.expected_makespan_hours <= result.total_hours + 1e-9
    assert result.total_hours == pytest.approx(sum(hours.values()), abs=1e-3)


def test_planning_is_deterministic():
    prompt = CASES[11].values[0].prompt
    assert plan(prompt).to_spec() == plan(prompt).to_spec()
    assert plan(prompt).reasons == plan(prompt).reasons


def test_to_spec_returns_a_copy():
    result = plan("Add rate limiting to the public API")
    spec = result.to_spec()
    spec["tasks"][0]["title"] = "changed"
    assert result.tasks[0]["title"] != "changed"
    assert set(spec) == {"tasks"}


def test_reasons_explain_template_size_rules_and_splits():
    result = plan("Add JWT authentication and role-based permissions to the GraphQL API")
    text = "\n".join(result.reasons)
    assert "template web_service (score" in text
    assert "runner-up" in text
    assert "size: scope x1.0" in text
    assert "rule auth (priority 40; jwt, authentication, permissions)" in text
    assert "split impl (expert" in text and "per component (auth, api)" in text


def test_a_large_request_is_split_deeper_and_keeps_parallel_branches():
    result = plan(
        "Build a complete multi-tenant SaaS billing platform with Stripe payments, invoices, "
        "a customer dashboard UI, REST API, Postgres database and SSO login"
    )
    graph = _graph(result)
    assert len(result.tasks) >= 25
    assert _sinks(graph) == {"deploy"}
    assert result.expected_makespan_hours < result.total_hours / 2
    assert not nx.has_path(graph, "impl-backend-api-1", "impl-frontend-1-1")
    assert not nx.has_path(graph, "impl-frontend-1-1", "impl-backend-api-1")
    assert all(
        ComplexityLevel(task["estimate"]["level"]) <= ComplexityLevel.MODERATE
        for task in result.tasks
    )


@pytest.mark.parametrize(
    ("target", "max_depth"), [("trivial", 3), ("simple", 4), ("complex", 3), ("expert", 2)]
)
def test_leaves_reach_the_target_level_or_the_depth_limit(target, max_depth):
    result = plan("Add a settings page backed by a new API endpoint", target_level=target,
                  max_depth=max_depth)  # fmt: skip
    limit = ComplexityLevel(target)
    stopped = [reason for reason in result.reasons if "max depth" in reason and "stays" in reason]
    too_big = [t for t in result.tasks if ComplexityLevel(t["estimate"]["level"]) > limit]
    assert len(too_big) == len(stopped)


def test_a_finer_target_yields_more_tasks_and_a_shorter_makespan():
    prompt = "Add a settings page backed by a new API endpoint"
    coarse = plan(prompt, target_level="complex")
    fine = plan(prompt, target_level="simple", max_depth=4)
    assert len(fine.tasks) > len(coarse.tasks)
    assert fine.expected_makespan_hours < coarse.expected_makespan_hours


def test_max_depth_one_keeps_the_template_steps():
    result = plan("Add a settings page backed by a new API endpoint", max_depth=1)
    keys = {task["key"] for task in result.tasks}
    assert keys == {"requirements", "design", "impl-backend", "impl-frontend", "test", "docs",
                    "deploy"}  # fmt: skip


def test_title_is_kept_and_used_for_matching():
    result = plan("Users cannot log in since Tuesday.", title="Fix login crash")
    assert result.title == "Fix login crash"
    assert result.template == "bug_fix"
    assert plan("Add an export button\nmore detail").title == "Add an export button"


def test_optional_docs_do_not_block_the_final_step():
    result = plan("Add rate limiting to the public API")
    docs = next(task for task in result.tasks if task["key"] == "docs")
    deploy = next(task for task in result.tasks if task["key"] == "deploy")
    assert docs["optional"] is True
    assert {"key": "docs", "type": "finish_to_start", "required": False} in deploy["depends_on"]
    assert {dep["type"] for dep in docs["depends_on"]} == {"start_to_start"}
