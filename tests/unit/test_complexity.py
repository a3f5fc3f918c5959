"""PERT arithmetic, level boundaries and the size signals the planner reads from a request."""

import math

import pytest

from app.planning import ComplexityLevel, Estimate, PlanningError, level_for_hours, pert_expected
from app.planning.complexity import (
    MAX_SCALE,
    MIN_SCALE,
    RequestProfile,
    analyze_request,
    breadth_factor,
    content_words,
)
from app.planning.text import tokenize


@pytest.mark.parametrize(
    ("optimistic", "likely", "pessimistic", "expected"),
    [
        (1, 2, 3, 2.0),
        (0, 0, 0, 0.0),
        (1, 1, 1, 1.0),
        (2, 4, 12, 5.0),
        (0.5, 1, 4, 8.5 / 6),
        (6, 6, 60, 15.0),
    ],
)
def test_pert_expected_is_o_plus_4m_plus_p_over_6(optimistic, likely, pessimistic, expected):
    assert pert_expected(optimistic, likely, pessimistic) == pytest.approx(expected)


def test_pert_weights_the_likely_value_four_times():
    assert pert_expected(0, 1, 0) == pytest.approx(4 / 6)
    assert pert_expected(1, 0, 0) == pytest.approx(1 / 6)
    assert pert_expected(0, 0, 1) == pytest.approx(1 / 6)


@pytest.mark.parametrize(
    ("hours", "level"),
    [
        (0.0, "trivial"),
        (0.2499, "trivial"),
        (0.25, "simple"),
        (0.9999, "simple"),
        (1.0, "moderate"),
        (3.9999, "moderate"),
        (4.0, "complex"),
        (7.9999, "complex"),
        (8.0, "expert"),
        (1000.0, "expert"),
    ],
)
def test_level_boundaries_are_lower_inclusive(hours, level):
    assert level_for_hours(hours) is ComplexityLevel(level)


@pytest.mark.parametrize("hours", [-0.01, math.nan, math.inf, "3", None])
def test_level_for_invalid_hours_raises(hours):
    with pytest.raises(PlanningError):
        level_for_hours(hours)


def test_levels_compare_by_rank_not_alphabetically():
    assert ComplexityLevel.MODERATE < ComplexityLevel.COMPLEX  # "complex" < "moderate" as text
    assert ComplexityLevel.EXPERT > ComplexityLevel.SIMPLE  # "expert" < "simple" as text
    ordered = sorted(ComplexityLevel, key=lambda level: level.value)
    assert ordered != list(ComplexityLevel)  # alphabetical order is a different order ...
    assert sorted(ordered) == list(ComplexityLevel)  # ... and sorting restores rank order
    assert [level.rank for level in ComplexityLevel] == [0, 1, 2, 3, 4]


def test_level_upper_bounds_match_the_spec():
    bounds = {level.value: level.upper_hours for level in ComplexityLevel}
    assert bounds == {
        "trivial": 0.25,
        "simple": 1.0,
        "moderate": 4.0,
        "complex": 8.0,
        "expert": math.inf,
    }


def test_estimate_exposes_pert_and_level():
    estimate = Estimate.from_hours(2, 4, 12)
    assert estimate.expected_hours == 5.0
    assert estimate.level is ComplexityLevel.COMPLEX
    assert estimate.to_dict() == {
        "optimistic_hours": 2,
        "likely_hours": 4,
        "pessimistic_hours": 12,
        "expected_hours": 5.0,
        "level": "complex",
    }


def test_estimate_exactly_on_a_boundary_takes_the_upper_level():
    assert Estimate.from_hours(1, 1, 1).level is ComplexityLevel.MODERATE
    assert Estimate.from_hours(0.25, 0.25, 0.25).level is ComplexityLevel.SIMPLE
    assert Estimate.from_hours(2, 4, 6).level is ComplexityLevel.COMPLEX
    assert Estimate.from_hours(8, 8, 8).level is ComplexityLevel.EXPERT


def test_estimate_level_agrees_with_its_rounded_expected_hours():
    estimate = Estimate.from_hours(0.99, 0.99, 1.04)  # PERT 0.99833 -> shown as 0.998
    assert estimate.level is level_for_hours(estimate.expected_hours)


@pytest.mark.parametrize(("hours"), [(3, 2, 4), (1, 2, 1), (-1, 1, 2), (0, 1, math.inf)])
def test_estimate_rejects_unordered_or_invalid_hours(hours):
    with pytest.raises(PlanningError):
        Estimate(*hours)


def test_scaled_estimate_keeps_the_order_and_never_reaches_zero():
    estimate = Estimate.from_hours(0.01, 0.02, 0.03).scaled(0.1)
    assert estimate.hours == (0.01, 0.01, 0.01)
    assert Estimate.from_hours(1, 2, 3).scaled(2).hours == (2, 4, 6)


@pytest.mark.parametrize("value", ["moderate", "Moderate", " EXPERT ", ComplexityLevel.SIMPLE])
def test_parse_accepts_names_case_insensitively(value):
    assert isinstance(ComplexityLevel.parse(value), ComplexityLevel)


@pytest.mark.parametrize("value", ["medium", "", None, 3])
def test_parse_rejects_unknown_levels(value):
    with pytest.raises(PlanningError, match="unknown complexity level"):
        ComplexityLevel.parse(value)


def test_scope_and_risk_words_change_the_profile_deterministically():
    for_all = "for the admin team, the auditors, the support desk and the billing staff"
    plain = analyze_request(f"Add a settings endpoint {for_all}")
    small = analyze_request(f"Add a small settings endpoint {for_all}")
    locked = analyze_request("Add a settings endpoint with a global lock")
    risky = analyze_request("Add a settings endpoint with a distributed lock")
    assert plain.scale == 1.0 and plain.risk == 1.0
    assert small.scale == 0.6  # scope words scale the work; they are not asks themselves
    assert risky.risk > locked.risk == 1.0 and risky.scale == locked.scale
    assert analyze_request("Add a small settings endpoint") == analyze_request(
        "Add a small settings endpoint"
    )


@pytest.mark.parametrize(
    ("text", "words", "factor"),
    [
        ("Add dark mode", 3, 0.7),
        ("Add dark mode to the mobile app", 5, 0.7),
        ("Add a small tooltip to the export button", 3, 0.7),
        ("Add a settings endpoint for the admin team and their auditors", 6, 0.76),
        ("Let users upload a profile picture, store it in S3 and show it on their profile page",
         10, 1.0),
        ("Implement a multi-tenant invoicing platform with a Postgres database, a GraphQL API, "
         "email notifications, PDF exports, Stripe billing and an audit log", 15, 1.3),
        (" ".join(f"word{n}" for n in range(40)), 40, 1.4),
    ],
)  # fmt: skip
def test_breadth_counts_content_words_within_bounds(text, words, factor):
    tokens = tokenize(text)
    assert content_words(tokens) == words
    assert breadth_factor(tokens) == factor


def test_breadth_is_a_reported_size_signal():
    short = analyze_request("Add dark mode")
    assert short.scale == 0.7
    assert "breadth 3 content word(s) x0.7" in short.signals
    ten = analyze_request(
        "Add dark mode to the settings screen, the login page, the app bar and the footer"
    )
    assert not any(signal.startswith("breadth") for signal in ten.signals)


def test_risk_widens_the_pessimistic_side_more_than_the_likely_one():
    plain = analyze_request("Add a report").estimate((1, 2, 4))
    risky = analyze_request("Add a report for the legacy payments migration").estimate((1, 2, 4))
    assert risky.optimistic_hours == plain.optimistic_hours
    assert risky.pessimistic_hours / plain.pessimistic_hours > (
        risky.likely_hours / plain.likely_hours
    )
    assert risky.level >= plain.level


def test_more_components_make_the_build_step_bigger():
    one = analyze_request("Add an API")
    three = analyze_request("Add an API, a Postgres table and a React page")
    assert one.components == ("api",)
    assert three.components == ("api", "data", "ui")
    base = (2, 4, 8)
    assert three.estimate(base, per_component=True).expected_hours > (
        one.estimate(base, per_component=True).expected_hours
    )
    same_size = RequestProfile(three.scale, three.risk, ("api",), ())
    assert (
        three.estimate(base)
        == same_size.estimate(base)
        == same_size.estimate(base, per_component=True)
    )


def test_components_are_whole_words_only():
    assert analyze_request("Improve the guide for the build tool").components == ()
    assert analyze_request("Tidy the b-ui-ld script and the author list").components == ()


def test_scale_is_clamped():
    huge = analyze_request("rewrite the entire whole comprehensive platform across everything")
    tiny = analyze_request("a tiny trivial typo one-line change")
    assert huge.scale == MAX_SCALE == 3.0
    assert tiny.scale == MIN_SCALE == 0.05
