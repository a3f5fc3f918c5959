"""Routing's hard filters, score components and ranking, on agents in memory (no database)."""

import pytest

from app.planning.complexity import ComplexityLevel
from app.services.routing import (
    COMPLEXITY_FIT,
    WEIGHTS,
    TaskFacts,
    complexity_for_hours,
    exclusions,
    rank,
    rank_task,
    score_breakdown,
    task_facts,
    weighted_score,
)
from models import Agent
from models.enums import AgentDriver, AgentStatus, AgentType

CODE = "code_generation"


def agent(name="a", **fields):
    values = dict(id=name, name=name, type=AgentType.IMPLEMENTER, capabilities=[CODE],
                  driver=AgentDriver.SHELL, capacity=1, preferred_technologies=[],
                  avoided_technologies=[], maintenance=False, status=AgentStatus.ACTIVE,
                  tasks_completed=0, tasks_failed=0)  # fmt: skip
    return Agent(**{**values, **fields})


def test_weights_sum_to_one_and_complexity_table_is_complete():
    assert sum(WEIGHTS.values()) == pytest.approx(1.0)
    assert set(COMPLEXITY_FIT) == set(AgentType)
    assert all(len(row) == len(ComplexityLevel) for row in COMPLEXITY_FIT.values())


def test_capability_fit_prefers_specialists():
    specialist = score_breakdown(agent(capabilities=[CODE]), 0, [CODE])
    generalist = score_breakdown(agent(capabilities=[CODE, "debugging", "refactoring"]), 0, [CODE])
    assert specialist["capability_fit"] == 1.0
    assert generalist["capability_fit"] == pytest.approx(1 / 3, abs=1e-4)
    assert score_breakdown(agent(), 0, [])["capability_fit"] == 1.0


def test_new_agent_is_neutral_and_scores_above_zero():
    breakdown = score_breakdown(agent(), 0, [CODE])
    assert breakdown["success_rate"] == 0.5
    assert weighted_score(breakdown) > 0.5


def test_load_is_the_spare_capacity_fraction():
    assert score_breakdown(agent(capacity=4), 1, [CODE])["load"] == 0.75
    assert score_breakdown(agent(capacity=1), 3, [CODE])["load"] == 0.0


def test_technology_overlap_is_case_insensitive_and_neutral_when_unknown():
    fan = agent(preferred_technologies=["Python", "Flask"])
    assert score_breakdown(fan, 0, [CODE], ["python", "react"])["technology"] == 0.5
    assert score_breakdown(fan, 0, [CODE], ["flask", "PYTHON"])["technology"] == 1.0
    assert score_breakdown(fan, 0, [CODE], ["go"])["technology"] == 0.0
    assert score_breakdown(agent(), 0, [CODE], ["go"])["technology"] == 0.5
    assert score_breakdown(fan, 0, [CODE], [])["technology"] == 0.5


def test_complexity_fit_follows_the_table():
    architect = agent(type=AgentType.ARCHITECT)
    implementer = agent(type=AgentType.IMPLEMENTER)
    expert, simple = ComplexityLevel.EXPERT, ComplexityLevel.SIMPLE
    fit = lambda a, level: score_breakdown(a, 0, [CODE], (), level)["complexity_fit"]  # noqa: E731
    assert fit(architect, expert) > fit(implementer, expert)
    assert fit(implementer, simple) > fit(architect, simple)
    assert fit(architect, None) == 0.5


@pytest.mark.parametrize(
    "fields, load, kwargs, reason",
    [
        ({"status": AgentStatus.INACTIVE}, 0, {}, "inactive"),
        ({"status": AgentStatus.UNHEALTHY, "health_reason": "5 consecutive failures"}, 0, {},
         "unhealthy: 5 consecutive failures"),
        ({"maintenance": True, "maintenance_reason": "upgrade"}, 0, {}, "in maintenance: upgrade"),
        ({}, 0, {"require_driver": "opencode"}, "driver shell, the task needs opencode"),
        ({}, 0, {"required": [CODE, "debugging"]}, "missing capabilities: debugging"),
        ({"avoided_technologies": ["PHP"]}, 0, {"technologies": ["php"]},
         "avoids technologies: php"),
        ({"capacity": 2}, 2, {}, "at capacity (2/2)"),
    ],
)  # fmt: skip
def test_each_hard_filter_names_its_reason(fields, load, kwargs, reason):
    required = kwargs.pop("required", [CODE])
    assert exclusions(agent(**fields), load, required, **kwargs) == (reason,)
    assert exclusions(agent(), 0, [CODE]) == ()


def test_rank_picks_the_best_score_and_breaks_ties_by_name():
    decision = rank([agent("b"), agent("a"), agent("c", tasks_completed=9)], {}, [CODE])
    assert [c.agent.name for c in decision.candidates] == ["c", "a", "b"]
    assert decision.chosen.name == "c" and "chose c" in decision.reason
    tie = rank([agent("b"), agent("a")], {}, [CODE])
    assert tie.chosen.name == "a" and tie.candidates[0].score == tie.candidates[1].score


def test_prefer_driver_ranks_that_driver_first_among_eligible_agents():
    shell = agent("shell", tasks_completed=50)
    opencode = agent("oc", driver=AgentDriver.OPENCODE)
    assert rank([shell, opencode], {}, [CODE]).chosen.name == "shell"
    decision = rank([shell, opencode], {}, [CODE], prefer_driver="opencode")
    assert decision.chosen.name == "oc" and "driver opencode preferred" in decision.reason
    only_shell = rank([shell], {}, [CODE], prefer_driver="opencode")
    assert only_shell.chosen.name == "shell"
    assert rank([shell], {}, [CODE], require_driver="opencode").chosen is None


def test_all_busy_is_reported_as_saturated_not_as_unfit():
    busy = [agent("x", capacity=1), agent("y", capacity=2)]
    decision = rank(busy, {"x": 1, "y": 2}, [CODE])
    assert decision.chosen is None
    assert [c.agent.name for c in decision.saturated] == ["x", "y"]
    assert "at capacity" in decision.reason
    unfit = rank([agent("x", maintenance=True)], {}, [CODE])
    assert unfit.saturated == [] and "x (in maintenance)" in unfit.reason
    assert rank([], {}, [CODE]).reason == "no agents are registered"


@pytest.mark.parametrize(
    "hours, level",
    [(None, None), (0.0, "trivial"), (0.24, "trivial"), (0.25, "simple"), (0.99, "simple"),
     (1.0, "moderate"), (3.99, "moderate"), (4.0, "complex"), (7.99, "complex"),
     (8.0, "expert"), (400.0, "expert"), (-1.0, None), (float("nan"), None)],
)  # fmt: skip
def test_complexity_of_an_estimate_is_the_planners_level(hours, level):
    assert complexity_for_hours(hours) == (ComplexityLevel(level) if level else None)


def test_task_facts_derive_driver_technologies_and_complexity():
    facts = task_facts(["testing", CODE, CODE], False, [" Python", "python", "React"], 2.0)
    assert facts == TaskFacts(
        (CODE, "testing"), "opencode", ("python", "react"), ComplexityLevel.MODERATE
    )
    assert task_facts([CODE], True) == TaskFacts((CODE,), None, (), None)
    explicit = task_facts([], True, (), None, ComplexityLevel.EXPERT)
    assert explicit.complexity is ComplexityLevel.EXPERT
    assert hash(facts) == hash(task_facts([CODE, "testing"], False, ["react", "PYTHON"], 3.5))


def test_rank_task_uses_all_five_components():
    architect = agent("arch", type=AgentType.ARCHITECT, preferred_technologies=["Go"])
    implementer = agent("impl", type=AgentType.IMPLEMENTER)
    small = rank_task([architect, implementer], {}, task_facts([CODE], True, ["go"], 0.1))
    big = rank_task([architect, implementer], {}, task_facts([CODE], True, ["go"], 12))
    assert small.candidates[1].breakdown["complexity_fit"] == 0.2  # the architect, trivial
    assert big.chosen.name == "arch" and big.candidates[0].breakdown == {
        "capability_fit": 1.0, "success_rate": 0.5, "load": 1.0, "technology": 1.0,
        "complexity_fit": 1.0}  # fmt: skip
    assert small.chosen.name == "impl"  # 1.0 fit for a trivial task beats the technology match
    neutral = rank_task([implementer], {}, task_facts([CODE], True))
    assert neutral.candidates[0].breakdown["technology"] == 0.5
    assert neutral.candidates[0].breakdown["complexity_fit"] == 0.5


def test_avoided_technologies_filter_and_explain_when_nothing_is_left():
    avoider = agent("no-java", avoided_technologies=["Java"])
    other = agent("other", capabilities=["debugging"])
    facts = task_facts([CODE], True, ["java", "kotlin"])
    decision = rank_task([avoider, other], {}, facts)
    assert decision.chosen is None and decision.waitable is None
    assert decision.reason.startswith(
        "every agent that fits otherwise avoids the task's technologies (java, kotlin): no-java;"
    )
    assert "other (missing capabilities: code_generation)" in decision.reason
    busy_avoider = rank_task([avoider], {"no-java": 1}, facts)
    assert busy_avoider.saturated == [] and busy_avoider.waitable is None
    fine = rank_task([avoider, agent("polyglot")], {}, facts)
    assert fine.chosen.name == "polyglot"
