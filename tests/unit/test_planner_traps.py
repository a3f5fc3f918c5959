"""The known planner traps: string-compared levels, duplicate children, stacked rules,
substring keyword matches, wrong rewiring, and swallowed errors."""

import ast
from pathlib import Path

import networkx as nx
import pytest

import app.planning
from app.planning import (
    ComplexityLevel,
    Estimate,
    PlanningError,
    analyze,
    critical_path,
    earliest_schedule,
    expected_makespan,
    find_cycle,
    plan,
    to_dot,
    to_mermaid,
    topological_levels,
    validate_spec,
)
from app.planning.capabilities import AgentCapability
from app.planning.complexity import analyze_request
from app.planning.decompose import MAX_TASKS, split_components
from app.planning.draft import DraftPlan, DraftTask
from app.planning.intent import read_intent
from app.planning.rules import RuleContext, split_frontend
from app.planning.templates import FEATURE
from app.planning.text import TokenIndex, tokenize

# --- helpers -------------------------------------------------------------------------------


def _task(key, hours=1.0, deps=(), **extra):
    depends_on = [
        dep if isinstance(dep, dict) else {"key": dep, "type": "finish_to_start", "required": True}
        for dep in deps
    ]
    estimate = {"optimistic_hours": hours, "likely_hours": hours, "pessimistic_hours": hours,
                "expected_hours": hours, "level": "simple"}  # fmt: skip
    return {"key": key, "title": key.title(), "depends_on": depends_on, "estimate": estimate,
            **extra}  # fmt: skip


def _draft_task(key, hours=1.0, **changes):
    task = DraftTask(key, key, key, "implementation", (AgentCapability.CODE_GENERATION,),
                     Estimate.from_hours(hours, hours, hours))  # fmt: skip
    return task.evolve(**changes) if changes else task


def _rules(result):
    return set(result.rule_by_task.values())


# --- levels compare by rank ----------------------------------------------------------------


def test_levels_are_ranked_not_alphabetical():
    assert "complex" < "moderate"  # the trap: alphabetical order says complex is smaller
    assert ComplexityLevel.COMPLEX > ComplexityLevel.MODERATE
    assert max(ComplexityLevel.COMPLEX, ComplexityLevel.MODERATE) is ComplexityLevel.COMPLEX
    assert min(ComplexityLevel.EXPERT, ComplexityLevel.SIMPLE) is ComplexityLevel.SIMPLE


@pytest.mark.parametrize("other", ["moderate", "complex", 2])
def test_levels_refuse_to_compare_with_strings_or_numbers(other):
    with pytest.raises(TypeError):
        _ = ComplexityLevel.COMPLEX < other
    with pytest.raises(TypeError):
        _ = other > ComplexityLevel.COMPLEX


def test_complex_tasks_are_split_for_a_moderate_target():
    # With string comparison "complex" <= "moderate" would hold and nothing would be split.
    result = plan("Add rate limiting to the public API", target_level="moderate")
    assert "impl" not in {task["key"] for task in result.tasks}
    assert any(reason.startswith("split impl (complex") for reason in result.reasons)


def test_complex_tasks_stay_whole_for_a_complex_target():
    # With string comparison "expert" < "simple" would hold and expert tasks would stay whole.
    result = plan("Add rate limiting to the public API", target_level="complex")
    levels = {task["key"]: task["estimate"]["level"] for task in result.tasks}
    assert levels["impl"] == "complex"


def test_expert_tasks_are_split_for_a_simple_target():
    prompt = "Build a complete REST API platform for payments"
    result = plan(prompt, target_level="simple", max_depth=4)
    assert all(task["estimate"]["level"] in {"trivial", "simple"} for task in result.tasks)


# --- no duplicate children -----------------------------------------------------------------


def test_synonyms_of_one_component_yield_one_child():
    result = plan("Add an API endpoint, REST routes and a GraphQL API next to the old API")
    keys = [task["key"] for task in result.tasks]
    assert analyze_request("API endpoint REST api").components == ("api",)
    assert len(keys) == len(set(keys))
    assert not any(key.startswith("impl-api") for key in keys)  # one component: split in parts


def test_split_keeps_the_first_of_duplicate_children():
    draft = DraftPlan()
    draft.add_task(_draft_task("a"))
    draft.add_task(_draft_task("impl", 10))
    draft.depend("a", "impl")
    children = [_draft_task("impl-x"), _draft_task("impl-x", title="again"), _draft_task("impl-y")]
    assert draft.split("impl", children) == ["impl-x", "impl-y"]
    assert draft.task("impl-x").title == "impl-x"
    assert sorted(draft.graph.successors("a")) == ["impl-x", "impl-y"]


def test_component_split_deduplicates_repeated_components():
    draft = DraftPlan()
    task = draft.add_task(_draft_task("impl", 10, components=("api", "ui", "api", "ui")))
    children, internal, _ = split_components(draft, task)
    assert [child.key for child in children] == ["impl-api", "impl-ui", "impl-integrate"]
    assert internal == [("impl-api", "impl-integrate"), ("impl-ui", "impl-integrate")]


def test_adding_an_existing_key_is_refused_not_duplicated():
    draft = DraftPlan()
    draft.add_task(_draft_task("impl"))
    with pytest.raises(PlanningError, match="added twice"):
        draft.add_task(_draft_task("impl"))
    assert draft.unique_key("impl") == "impl-2"


# --- one rule per task ---------------------------------------------------------------------

ALL_RULES = (
    "Build a dashboard page with a REST API and a Postgres database, with login and "
    "permissions, split into microservices"
)


def test_each_rule_applies_once_and_creates_its_own_tasks():
    result = plan(ALL_RULES, max_depth=1)
    assert _rules(result) == {"ui", "database", "service", "security"}
    for rule in ("ui", "database", "service", "security"):
        assert sum(r.startswith(f"rule {rule} ") for r in result.reasons) == 1
    keys = [task["key"] for task in result.tasks]
    assert keys.count("schema") == 1 and keys.count("security-review") == 1
    assert {key for key, rule in result.rule_by_task.items() if rule == "security"} == {
        "security-review"
    }


def test_rules_do_not_stack_capabilities_on_the_build_tasks():
    result = plan(ALL_RULES, max_depth=1)
    by_key = {task["key"]: task for task in result.tasks}
    assert by_key["impl-backend"]["required_capabilities"] == ["code_generation"]
    assert by_key["impl-frontend"]["required_capabilities"] == ["code_generation"]
    assert by_key["security-review"]["required_capabilities"] == ["security_audit", "code_review"]


def test_a_second_rule_cannot_claim_a_task():
    draft = DraftPlan()
    draft.add_task(_draft_task("impl"))
    draft.claim("impl", "ui")
    draft.claim("impl", "ui")  # the same rule again is harmless
    with pytest.raises(PlanningError, match="already shaped by rule 'ui'"):
        draft.claim("impl", "auth")


def test_a_rule_skips_a_task_another_rule_shaped():
    draft = DraftPlan()
    draft.add_task(_draft_task("impl", components=("api", "ui")))
    draft.roles["build"] = ["impl"]
    draft.claim("impl", "custom")
    context = RuleContext(FEATURE, analyze_request("api ui"), "api ui", read_intent("api ui"))
    assert split_frontend(draft, context).startswith("skipped")
    assert list(draft.graph) == ["impl"] and draft.owner("impl") == "custom"


def test_rules_outside_their_templates_are_reported_not_applied():
    result = plan("Fix the broken settings page layout")
    assert result.template == "bug_fix" and _rules(result) == set()
    assert any("rule ui matched (page, layout) but does not apply" in r for r in result.reasons)


# --- whole-word matching -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("Speed up the build", "ui"),
        ("Write a user guide", "ui"),
        ("Fix the b-ui-ld script", "ui"),
        ("Tidy the ui_state helper", "ui"),
        ("Add an author field", "auth"),
        ("Show the authored date", "auth"),
        ("Fix the auth-or typo", "auth"),
        ("Store last_login_at", "login"),
        ("Transform the payload", "form"),
        ("Reformat the API docs", "form"),
    ],
)
def test_keywords_never_match_inside_words(text, word):
    assert not TokenIndex(text).contains(word)


def test_tokens_keep_hyphenated_and_snake_case_words_whole():
    assert tokenize("Fix the b-ui-ld, UI and front-end of last_login_at!") == (
        "fix", "the", "b-ui-ld", "ui", "and", "front-end", "of", "last_login_at",
    )  # fmt: skip
    index = TokenIndex("Rework the front end and the Front-End")
    assert index.contains("front end") and index.contains("front-end")
    assert not index.contains("end front")


@pytest.mark.parametrize(
    "prompt",
    [
        "Speed up the CI build by caching pip dependencies",
        "Write a user guide for the build system",
        "Fix the b-ui-ld script that packages releases",
        "Add a guide to rebuild the search index",
    ],
)
def test_ui_rule_ignores_words_containing_ui(prompt):
    result = plan(prompt)
    assert "ui" not in _rules(result)
    assert not any(r.startswith("rule ui") for r in result.reasons)


@pytest.mark.parametrize(
    "prompt",
    [
        "Add an author field to the blog post model",
        "Show the author of each commit in the changelog",
        "Fix the authoring workflow for editors",
    ],
)
def test_auth_rule_ignores_author(prompt):
    result = plan(prompt)
    assert "security" not in _rules(result)
    assert "security-review" not in {task["key"] for task in result.tasks}


@pytest.mark.parametrize(
    ("prompt", "rule"),
    [
        ("Add a UI for managing API keys", "ui"),
        ("Add a front-end for the reports", "ui"),
        ("Add auth to the admin API", "security"),
        ("Add OAuth2 sign-in to the API", "security"),
        ("Add a CRUD API for products", "database"),
    ],
)
def test_the_same_rules_fire_on_whole_words(prompt, rule):
    assert rule in _rules(plan(prompt))


# --- rewiring when a task is split ---------------------------------------------------------


def test_split_rewires_each_dependency_type_to_the_right_side():
    draft = DraftPlan()
    for key in ("fs-in", "ss-in", "ff-in", "x", "fs-out", "ss-out", "ff-out", "sf-out"):
        draft.add_task(_draft_task(key))
    draft.depend("fs-in", "x", "finish_to_start")
    draft.depend("ss-in", "x", "start_to_start", required=False)
    draft.depend("ff-in", "x", "finish_to_finish")
    for kind, key in (
        ("finish_to_start", "fs-out"),
        ("start_to_start", "ss-out"),
        ("finish_to_finish", "ff-out"),
        ("start_to_finish", "sf-out"),
    ):
        draft.depend("x", key, kind)
    children = [_draft_task("x-a"), _draft_task("x-b"), _draft_task("x-join")]
    draft.split("x", children, [("x-a", "x-join"), ("x-b", "x-join")])
    graph = draft.graph
    assert sorted(graph.successors("fs-in")) == ["x-a", "x-b"]  # start constraints: entries
    assert sorted(graph.successors("ss-in")) == ["x-a", "x-b"]
    assert graph.edges["ss-in", "x-a"]["required"] is False
    assert list(graph.successors("ff-in")) == ["x-join"]  # finish constraints: exits
    assert list(graph.predecessors("fs-out")) == ["x-join"]
    assert list(graph.predecessors("ff-out")) == ["x-join"]
    assert sorted(graph.predecessors("ss-out")) == ["x-a", "x-b"]
    assert sorted(graph.predecessors("sf-out")) == ["x-a", "x-b"]
    assert "x" not in graph


def test_splitting_a_rule_task_keeps_one_owner_for_its_children():
    result = plan(ALL_RULES)
    owners = {key: rule for key, rule in result.rule_by_task.items() if key.startswith("impl-")}
    assert owners and set(owners.values()) == {"ui"}
    assert set(result.rule_by_task) <= {task["key"] for task in result.tasks}


# --- errors are raised, never swallowed ----------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt": ""}, "must not be empty"),
        ({"prompt": "   \n\t"}, "must not be empty"),
        ({"prompt": None}, "must be a string"),
        ({"prompt": "x" * 20_001}, "limit is 20000"),
        ({"prompt": "Add a page", "target_level": "medium"}, "unknown complexity level"),
        ({"prompt": "Add a page", "target_level": None}, "unknown complexity level"),
        ({"prompt": "Add a page", "max_depth": 0}, "between 1 and 6"),
        ({"prompt": "Add a page", "max_depth": 7}, "between 1 and 6"),
        ({"prompt": "Add a page", "max_depth": True}, "must be an integer"),
        ({"prompt": "Add a page", "max_depth": "3"}, "must be an integer"),
        ({"prompt": "Add a page", "title": 42}, "title must be a string"),
    ],
)
def test_bad_input_raises_planning_error(kwargs, message):
    prompt = kwargs.pop("prompt")
    with pytest.raises(PlanningError, match=message):
        plan(prompt, **kwargs)


def test_planning_error_is_a_value_error():
    assert issubclass(PlanningError, ValueError)


def test_runaway_decomposition_raises_instead_of_truncating():
    prompt = ("Rewrite the entire distributed payments platform with a new dashboard UI, REST "
              "API, Postgres database and SSO login across all microservices")  # fmt: skip
    with pytest.raises(PlanningError, match=f"exceed {MAX_TASKS} tasks"):
        plan(prompt, target_level="trivial", max_depth=6)


def test_cycles_are_named():
    spec = {"tasks": [_task("a", deps=["c"]), _task("b", deps=["a"]), _task("c", deps=["b"])]}
    with pytest.raises(PlanningError, match="dependency cycle") as caught:
        validate_spec(spec)
    cycle = caught.value.errors[0].removeprefix("cycle: ").split(" -> ")
    assert set(cycle) == {"a", "b", "c"} and cycle[0] == cycle[-1] and len(cycle) == 4
    assert find_cycle(nx.DiGraph([("x", "y")])) is None


def test_every_spec_problem_is_reported_at_once():
    spec = {
        "tasks": [
            _task("a"),
            _task("a"),
            _task("b", deps=["ghost"]),
            _task("c", deps=["c"]),
            _task("d", deps=[{"key": "a", "type": "sideways", "required": True}]),
            _task("e", deps=["a", "a"]),
            {"title": "no key"},
        ]
    }
    with pytest.raises(PlanningError) as caught:
        validate_spec(spec)
    errors = "\n".join(caught.value.errors)
    assert len(caught.value.errors) == 6
    for fragment in (
        "duplicate task key 'a'",
        "unknown task 'ghost'",
        "depends on itself",
        "unknown dependency type 'sideways'",
        "more than once",
        "task #6",
    ):
        assert fragment in errors


@pytest.mark.parametrize("spec", [None, [], {"tasks": "a"}, {"steps": []}])
def test_non_spec_input_raises(spec):
    with pytest.raises(PlanningError, match="'tasks' list"):
        validate_spec(spec)


def test_the_package_never_swallows_exceptions():
    for path in Path(app.planning.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ExceptHandler):
                caught = ast.unparse(node.type) if node.type else "everything"
                assert caught not in {"everything", "Exception", "BaseException"}, path.name
                assert not all(isinstance(stmt, ast.Pass) for stmt in node.body), path.name


# --- graph helpers: durations, dependency types, rendering ---------------------------------


def test_critical_path_weighs_task_hours_not_edge_counts():
    spec = {"tasks": [_task("start", 1), _task("long", 10, ["start"]),
                      _task("s1", 1, ["start"]), _task("s2", 1, ["s1"]), _task("s3", 1, ["s2"]),
                      _task("end", 1, ["long", "s3"])]}  # fmt: skip
    assert critical_path(spec) == (["start", "long", "end"], 12.0)
    assert topological_levels(spec) == [["start"], ["long", "s1"], ["s2"], ["s3"], ["end"]]


def test_makespan_honours_every_dependency_type():
    def dep(key, kind):
        return {"key": key, "type": kind, "required": True}

    spec = {"tasks": [_task("a", 4), _task("ss", 2, [dep("a", "start_to_start")]),
                      _task("ff", 1, [dep("a", "finish_to_finish")]),
                      _task("sf", 3, [dep("a", "start_to_finish")]),
                      _task("fs", 2, [dep("ff", "finish_to_start")])]}  # fmt: skip
    schedule = earliest_schedule(spec)
    assert schedule["ss"] == (0.0, 2.0)
    assert schedule["ff"] == (3.0, 4.0)
    assert schedule["sf"] == (0.0, 3.0)
    assert schedule["fs"] == (4.0, 6.0)
    assert expected_makespan(spec) == 6.0
    assert critical_path(spec) == (["a", "ff", "fs"], 6.0)


def test_unestimated_tasks_count_one_hour():
    spec = {"tasks": [{"key": "a"}, {"key": "b", "depends_on": [{"key": "a"}]}]}
    assert critical_path(spec) == (["a", "b"], 2.0)
    assert critical_path({"tasks": []}) == ([], 0.0)


def test_dot_and_mermaid_escape_titles_and_use_safe_ids():
    spec = {"tasks": [_task("end", 1, title='Say "hi"\\now'),
                      _task("graph", 2, [{"key": "end", "type": "start_to_start",
                                          "required": False}], optional=True)]}  # fmt: skip
    dot = to_dot(spec)
    assert dot.startswith("digraph plan {") and dot.rstrip().endswith("}")
    assert '"end" [label="Say \\"hi\\"\\\\now\\nend · 1.0 h"];' in dot
    assert '"end" -> "graph" [label="SS", style=dashed];' in dot
    assert 'style="rounded,dashed"' in dot
    mermaid = to_mermaid(spec)
    assert mermaid.splitlines()[0] == "graph TD"
    assert '  t0["Say #quot;hi#quot;\\now<br/>end · 1.0 h"]' in mermaid
    assert "  t0 -.->|SS| t1" in mermaid
    assert '  t1(["Graph<br/>graph · 2.0 h"])' in mermaid


def test_rendering_rejects_invalid_specs():
    with pytest.raises(PlanningError, match="cycle"):
        to_mermaid({"tasks": [_task("a", deps=["b"]), _task("b", deps=["a"])]})


def test_analyze_agrees_with_the_single_purpose_helpers():
    result = plan(ALL_RULES)
    analysis = analyze(result.to_spec())
    assert (analysis.critical_path, analysis.makespan_hours) == critical_path(result.to_spec())
    assert analysis.levels == topological_levels(analysis.graph)
    assert [key for level in analysis.levels for key in level][0] == "requirements"
    assert analysis.schedule == earliest_schedule(analysis.graph)


def test_a_cyclic_graph_is_refused_by_every_helper():
    graph = nx.DiGraph([("a", "b"), ("b", "a")])
    for helper in (critical_path, topological_levels, expected_makespan, analyze):
        with pytest.raises(PlanningError, match="cycle a -> b -> a|cycle b -> a -> b"):
            helper(graph)


def test_ten_thousand_tasks_validate_and_analyze():
    # A chain of layers, 3 dependencies per task; bench/planning.py times analyze at this size.
    width, tasks = 100, []
    for index in range(10_000):
        layer = index // width
        deps = [f"t{(layer - 1) * width + (index + shift) % width}" for shift in (0, 7, 31)]
        tasks.append(_task(f"t{index}", 1.0, deps if layer else ()))
    analysis = analyze({"tasks": tasks})
    assert len(analysis.levels) == 100 and analysis.makespan_hours == 100.0
    assert [int(key[1:]) // width for key in analysis.critical_path] == list(range(100))
