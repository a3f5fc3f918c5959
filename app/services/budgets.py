"""Budgets: limits on tokens, cost and agent time, what was spent, and the price table.

A budget is `{max_tokens, max_cost_usd, max_agent_seconds}` (each optional) on a session, over
all its tasks and attempts, or on one task. Spent figures are `{tokens, cost_usd,
agent_seconds}`. Cost is what OpenCode reports, else tokens times the model's price from the
MODEL_PRICES setting (JSON: {"provider/model": {"input_per_mtok": USD, "output_per_mtok":
USD}}), so a cost budget needs every model that may run under it to have a price.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from models import Agent
from models.enums import AgentDriver, AgentStatus

from .errors import ValidationFailed

# limit name -> spent figure it bounds
LIMITS = {"max_tokens": "tokens", "max_cost_usd": "cost_usd", "max_agent_seconds": "agent_seconds"}
WARNING_SHARE = 0.8


def limits_of(budget: Mapping | None) -> dict[str, Any]:
    """A budget as stored: only the limits given."""
    return {name: value for name, value in (budget or {}).items() if value is not None}


def spent(tokens: int, cost_usd: float, agent_seconds: float) -> dict[str, Any]:
    """Spent figures as the API shows them."""
    return {"tokens": int(tokens), "cost_usd": round(float(cost_usd), 6),
            "agent_seconds": round(float(agent_seconds), 3)}  # fmt: skip


def spent_of(row: Any) -> dict[str, Any]:
    """The spent figures of a session or task (a model object or a row with its columns)."""
    return spent(row.spent_tokens, row.spent_cost_usd, row.spent_agent_seconds)


def crossed(budget: Mapping, before: Mapping, after: Mapping, share: float = 1.0) -> list[str]:
    """The limits whose `share` the spending from `before` to `after` reached just now."""
    return [
        limit for limit, figure in LIMITS.items()
        if budget.get(limit) and before[figure] < share * budget[limit] <= after[figure]
    ]  # fmt: skip


def exhausted(budget: Mapping, figures: Mapping) -> list[str]:
    """The limits of `budget` that `figures` reached."""
    return [
        limit for limit, figure in LIMITS.items()
        if budget.get(limit) and figures[figure] >= budget[limit]
    ]  # fmt: skip


def model_prices() -> dict[str, dict[str, float]]:
    """The price table: MODEL_PRICES from the app config, else from the environment."""
    table = current_app.config.get("MODEL_PRICES") if has_app_context() else None
    if table is None:
        table = json.loads(os.environ.get("MODEL_PRICES") or "{}")
    return table if isinstance(table, dict) else {}


def cost_of(model: str | None, tokens: Mapping[str, int], reported: float) -> float:
    """An attempt's cost: what the agent reported, else its tokens at the model's price."""
    if reported:
        return float(reported)
    price = model_prices().get(model or "")
    if not price:
        return 0.0
    return (
        tokens.get("input", 0) * float(price.get("input_per_mtok", 0))
        + (tokens.get("output", 0) + tokens.get("reasoning", 0))
        * float(price.get("output_per_mtok", 0))
    ) / 1_000_000


def check_cost_budgets(
    db: DbSession, session_budget: Mapping, task_specs: list[dict[str, Any]]
) -> None:
    """422 when a cost budget covers a task that a model without a price may run: every
    active OpenCode agent with the task's capabilities may (shell tasks cost nothing)."""
    costed = [
        spec for spec in task_specs
        if not spec.get("command") and spec.get("action") != "integrate"
        and ((spec.get("budget") or {}).get("max_cost_usd") or session_budget.get("max_cost_usd"))
    ]  # fmt: skip
    if not costed:
        return
    prices = model_prices()
    agents = db.execute(
        select(Agent.name, Agent.model, Agent.capabilities).where(
            Agent.driver == AgentDriver.OPENCODE, Agent.status == AgentStatus.ACTIVE
        )
    ).all()
    unpriced: set[str] = set()
    for spec in costed:
        needed = {getattr(c, "value", c) for c in spec.get("required_capabilities") or ()}
        for name, model, capabilities in agents:
            if needed <= set(capabilities or ()) and (model or "") not in prices:
                unpriced.add(f"{model or '(default model)'} (agent {name})")
    if unpriced:
        shown = ", ".join(sorted(unpriced))
        raise ValidationFailed(
            f"A cost budget needs a price for every model that may run under it; no price for "
            f"{shown}. Add them to MODEL_PRICES or budget tokens instead.",
            {"budget.max_cost_usd": [f"No price for {shown}."]},
        )
