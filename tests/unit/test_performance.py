"""Performance figures of an agent: Beta-smoothed success, tiers and load levels (pure)."""

import pytest

from app.services.performance import (
    LoadLevel,
    Tier,
    load_level,
    performance_of,
    success_score,
    tier_for,
)
from models import Agent


def test_success_score_is_neutral_without_history_and_never_zero_or_one():
    assert success_score(0, 0) == 0.5
    assert 0 < success_score(0, 1000) < 0.01
    assert 0.99 < success_score(1000, 0) < 1
    assert success_score(1, 0) == pytest.approx(0.6)


@pytest.mark.parametrize(
    "completed, failed, tier",
    [
        (0, 0, Tier.TRAINEE),
        (4, 0, Tier.TRAINEE),
        (0, 4, Tier.TRAINEE),
        (19, 0, Tier.ADVANCED),  # perfect, but fewer than 20 tasks
        (19, 1, Tier.ELITE),  # 0.95 with 20 tasks
        (18, 2, Tier.ADVANCED),  # 0.90
        (17, 3, Tier.ADVANCED),  # 0.85
        (16, 4, Tier.COMPETENT),  # 0.80
        (7, 3, Tier.COMPETENT),  # 0.70
        (6, 4, Tier.DEGRADED),  # 0.60
        (0, 5, Tier.DEGRADED),
    ],
)
def test_tiers(completed, failed, tier):
    assert tier_for(completed, failed) is tier


@pytest.mark.parametrize(
    "load, capacity, level",
    [
        (0, 1, LoadLevel.IDLE),
        (3, 5, LoadLevel.OPTIMAL),  # 0.6
        (1, 10, LoadLevel.OPTIMAL),
        (4, 5, LoadLevel.HIGH),  # 0.8
        (17, 20, LoadLevel.HIGH),  # 0.85
        (9, 10, LoadLevel.CRITICAL),  # 0.9
        (1, 1, LoadLevel.OVERLOADED),
        (3, 2, LoadLevel.OVERLOADED),
    ],
)
def test_load_levels(load, capacity, level):
    assert load_level(load, capacity) is level


def test_performance_of_an_agent():
    agent = Agent(capacity=4, tasks_completed=9, tasks_failed=1, total_duration_seconds=50.0,
                  total_tokens=1000, total_cost=0.5, consecutive_failures=1)  # fmt: skip
    perf = performance_of(agent, load=2)
    assert (perf.tasks_total, perf.success_rate, perf.mean_duration_seconds) == (10, 0.9, 5.0)
    assert (perf.mean_tokens, perf.total_cost, perf.tier) == (100.0, 0.5, Tier.ADVANCED)
    assert (perf.current_load, perf.load_ratio, perf.load_level) == (2, 0.5, LoadLevel.OPTIMAL)
    assert perf.success_score == pytest.approx(11 / 14, abs=1e-4)


def test_performance_of_a_new_agent_has_no_rates_yet():
    perf = performance_of(Agent(capacity=1), load=0)
    assert perf.success_rate is None and perf.mean_duration_seconds is None
    assert perf.success_score == 0.5 and perf.tier is Tier.TRAINEE
    assert perf.load_level is LoadLevel.IDLE
