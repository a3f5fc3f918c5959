"""Plans sized to the request: request kinds, sensitive domains, new services and plan shapes."""

import networkx as nx
import pytest

from app.planning import ComplexityLevel, plan, validate_spec
from app.planning.complexity import analyze_request
from app.planning.intent import clauses, read_intent
from app.planning.shape import request_size
from app.planning.templates import BUG_FIX, DOCUMENTATION, FEATURE


def _keys(result):
    return [task["key"] for task in result.tasks]


def _caps(result):
    return {c for task in result.tasks for c in task["required_capabilities"]}


# --- request kinds -------------------------------------------------------------------------


def test_clauses_split_on_punctuation_and_conjunctions_and_drop_filler():
    assert clauses("Please add a flag, then document it; also update the changelog") == [
        ("add", "a", "flag"), ("document", "it"), ("update", "the", "changelog"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    "prompt",
    [
        "Fix typo in README installation section",
        "Add docstrings to the public functions of the parser module",
        "Explain the retry policy in the architecture docs",
        "Update the README and the changelog for the 2.0 release",
        "Write a runbook for rotating the TLS certificates",
    ],
)
def test_documentation_only_requests(prompt):
    assert read_intent(prompt).docs_only
    result = plan(prompt)
    assert result.template == "documentation"
    assert not _caps(result) & {"code_generation", "deployment", "configuration"}


@pytest.mark.parametrize(
    "prompt",
    [
        "Add a --dry-run flag to the CLI and document it in the README",
        "Fix the crash in the README renderer",
        "Add a search box to the documentation site",
        "Add a staging environment to the pipeline with a manual approval step",
        "Allow users to post comments on articles",
    ],
)
def test_requests_that_change_code_are_not_documentation_only(prompt):
    assert not read_intent(prompt).docs_only
    assert plan(prompt).template != "documentation"


def test_a_code_change_named_with_documentation_words_leaves_the_documentation_template():
    result = plan("Add a --dry-run flag to the CLI and document it in the README")
    assert result.template == "feature"
    assert result.reasons[0].startswith("template feature: the request also changes code")


@pytest.mark.parametrize(
    ("prompt", "template"),
    [
        ("Review the pull request that adds caching to the search endpoint", "code_review"),
        ("Do a code review of the new scheduler module", "code_review"),
        ("Assess the test suite of the CLI and write up the findings", "code_review"),
        ("Audit the session handling for OWASP vulnerabilities", "security_review"),
        ("Review the JWT validation middleware", "security_review"),
    ],
)
def test_review_only_requests_get_a_review_and_change_nothing(prompt, template):
    assert read_intent(prompt).review_only
    result = plan(prompt)
    assert result.template == template
    assert not {t["phase"] for t in result.tasks} & {"implementation", "fix", "deployment"}
    assert "review-only request" in result.reasons[0]


@pytest.mark.parametrize(
    "prompt",
    [
        "Review the error handling in the payments service and fix anything risky",
        "Audit the dependencies and upgrade the vulnerable ones",
        "Preview the invoice PDF before sending it",
    ],
)
def test_a_review_that_also_asks_for_changes_is_not_review_only(prompt):
    assert not read_intent(prompt).review_only
    assert plan(prompt).template not in {"code_review", "security_review"}


# --- security-sensitive domains --------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "domain"),
    [
        ("Add SSO login with SAML", "authentication"),
        ("Only project owners may delete a project; enforce the permission", "access control"),
        ("Add refunds to the checkout", "payments"),
        ("Load the SMTP credentials from the environment", "secrets"),
        ("Expire refresh tokens after 30 days", "tokens"),
        ("Encrypt uploaded attachments with a per-tenant key", "encryption"),
    ],
)
def test_each_sensitive_domain_gets_a_security_review(prompt, domain):
    intent = read_intent(prompt)
    assert domain in dict(intent.sensitive)
    result = plan(prompt)
    assert "security-review" in _keys(result)
    assert result.rule_by_task["security-review"] == "security"
    assert any(r.startswith("rule security (priority 40; ") and domain in r for r in result.reasons)


@pytest.mark.parametrize(
    "prompt",
    [
        "Speed up the tokenizer of the template engine",
        "Add an author field to the blog post model",
        "Encrypting is not needed; just add a CSV export of the orders",
        "Show the rest of the list when the user scrolls",
    ],
)
def test_sensitive_words_match_whole_words_only(prompt):
    sensitive = dict(read_intent(prompt).sensitive)
    assert "tokens" not in sensitive and "authentication" not in sensitive
    assert "encryption" not in sensitive


def test_the_security_review_precedes_deployment():
    result = plan("Configure TLS certificates for the staging and production clusters")
    graph = validate_spec(result.to_spec())
    assert nx.has_path(graph, "security-review", "rollout")
    assert nx.has_path(graph, "configure", "security-review")


def test_a_security_audit_template_is_its_own_security_review():
    result = plan("Harden the session cookies against XSS and CSRF")
    assert result.template == "security_audit"
    assert "security-review" not in _keys(result)
    assert any("covered by threat-model, audit, verify" in reason for reason in result.reasons)


# --- new or split-out services -------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "words"),
    [
        ("Extract the PDF rendering into its own service", ("own", "service")),
        ("Build a new payments service", ("new", "service")),
        ("Create a microservice for thumbnails", ("create", "microservice")),
        ("Split the monolith into modules that deploy separately", ("split", "monolith")),
    ],
)
def test_service_creation_is_detected(prompt, words):
    assert read_intent(prompt).service == words


@pytest.mark.parametrize(
    "prompt",
    [
        "Add a new endpoint to the billing service",
        "Fix the crash in the orders microservice",
        "Add OAuth login to the user service",
        "Deploy the service to Kubernetes",
    ],
)
def test_changing_an_existing_service_is_not_creating_one(prompt):
    assert read_intent(prompt).service == ()
    assert "service" not in set(plan(prompt).rule_by_task.values())


def test_a_split_out_service_in_a_template_without_deployment_gets_one():
    result = plan("Extract the thumbnail generation into a separate service")
    graph = validate_spec(result.to_spec())
    assert result.template == "refactoring"
    assert {"contracts", "service-config", "deploy"} <= set(_keys(result))
    assert {k for k in graph if graph.out_degree(k) == 0} == {"deploy"}
    assert nx.has_path(graph, "verify", "deploy") and nx.has_path(graph, "service-config", "deploy")
    assert "the template has no deployment, so added deploy after verify" in "\n".join(
        result.reasons
    )


def test_a_new_service_is_never_planned_as_a_compact_plan():
    result = plan("Extract the tiny slug helper into its own small service")
    assert "raised to moderate: a service is created or split" in "\n".join(result.reasons)
    assert {"configuration", "deployment"} <= _caps(result)


# --- shapes by size ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "prompt", "level"),
    [
        (DOCUMENTATION, "Fix a typo in the README", ComplexityLevel.TRIVIAL),
        (BUG_FIX, "Fix the off-by-one in the pager", ComplexityLevel.SIMPLE),
        (FEATURE, "Add dark mode to the mobile app", ComplexityLevel.MODERATE),
        (FEATURE, "Add CSV export of invoices to the admin dashboard", ComplexityLevel.COMPLEX),
    ],
)
def test_request_size_is_the_level_of_the_core_work(template, prompt, level):
    size = request_size(template, analyze_request(prompt), read_intent(prompt))
    assert size.level is level
    assert size.estimate.level is level
    assert size.compact == (level <= ComplexityLevel.SIMPLE)


def test_structural_rules_do_not_split_a_compact_plan():
    result = plan("Add a tooltip to the export button")
    assert _keys(result) == ["impl", "review"]
    assert any("rule ui matched" in r and "the plan is compact" in r for r in result.reasons)


def test_a_moderate_request_folds_the_opening_step_into_the_next():
    result = plan("Add dark mode to the mobile app")
    assert "requirements" not in _keys(result)
    design = result.tasks[0]
    assert design["key"] == "design" and design["depends_on"] == []
    assert design["description"].startswith("Clarify scope, constraints and acceptance criteria.")


def test_a_complex_request_keeps_the_whole_template():
    result = plan("Add CSV export of invoices to the admin dashboard")
    assert _keys(result)[0] == "requirements"
    assert "the whole feature template" in result.reasons[2]


def test_examples_are_written_only_for_documentation_of_something_one_calls():
    assert "examples" in _keys(plan("Document the public REST API endpoints in the README"))
    runbook = plan("Write a runbook for restoring the database from backups")
    assert "examples" not in _keys(runbook)
    graph = validate_spec(runbook.to_spec())
    assert nx.has_path(graph, "write", "review")


def test_finer_targets_still_split_a_moderate_plan():
    coarse = plan("Add dark mode to the mobile app")
    fine = plan("Add dark mode to the mobile app", target_level="simple", max_depth=4)
    assert len(fine.tasks) > len(coarse.tasks)
    assert all(ComplexityLevel(t["estimate"]["level"]) <= ComplexityLevel.SIMPLE
               for t in fine.tasks)  # fmt: skip


def test_a_small_review_only_request_is_one_review_task():
    result = plan("Audit the tiny CSV import helper for OWASP issues")
    assert result.template == "security_review"
    size = result.reasons[2]
    assert size.startswith("request size simple") and size.endswith("one task (the review)")
    assert [(t["key"], t["phase"]) for t in result.tasks] == [("audit", "review")]
