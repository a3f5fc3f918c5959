"""The dashboard's approvals inbox: pending gates, plans and budgets, decided by a form that
calls what `POST /api/v1/approvals/{id}` calls."""

from __future__ import annotations

import logging

from flask import flash, redirect, render_template, request, url_for
from marshmallow import ValidationError

from app.api.approvals import decide_and_dispatch
from app.extensions import db
from app.schemas.approvals import DecisionSchema
from app.services import approvals as approval_service
from app.services.errors import DomainError
from models.approvals import ApprovalStatus

from .auth import require
from .blueprint import blp

logger = logging.getLogger(__name__)
BUDGET_FIELDS = ("max_tokens", "max_cost_usd", "max_agent_seconds")


@blp.get("/approvals")
def approvals():
    """The inbox: pending approvals, oldest request first."""
    require("read")
    try:
        page = max(1, int(request.args.get("page", "1")))
    except ValueError:
        return render_template("error.html", code=422, message="page must be a number."), 422
    with db.session.begin():
        items, total = approval_service.list_approvals(
            db.session, status=ApprovalStatus.PENDING, page=page, page_size=20
        )
        rows = [_row(item) for item in items]
    return render_template("approvals.html", approvals=rows, total=total, page=page)


def _row(approval) -> dict:
    return {"id": approval.id, "session_id": approval.session_id, "task_id": approval.task_id,
            "kind": approval.kind.value, "requested_at": approval.requested_at,
            "figures": approval.figures or {}}  # fmt: skip


@blp.post("/approvals/<approval_id>")
def decide(approval_id: str):
    """Approve or reject, with a comment and, for a budget, raised limits."""
    principal = require("write")
    body = {"decision": request.form.get("decision", "")}
    if request.form.get("comment"):
        body["comment"] = request.form["comment"]
    budget = {name: request.form[name] for name in BUDGET_FIELDS if request.form.get(name)}
    if budget:
        body["budget"] = budget
    try:
        data = DecisionSchema().load(body)
        decide_and_dispatch(approval_id, data, principal.name)
    except ValidationError as error:
        flash(f"Not decided: {error.messages}", "error")
    except DomainError as error:
        flash(f"Not decided: {error}", "error")
    else:
        logger.info("ui approval decision=%s approval_id=%s token_id=%s", data["decision"],
                    approval_id, principal.token_id)  # fmt: skip
        flash(f"Approval {approval_id}: {data['decision']}d.", "info")
    return redirect(url_for("ui.approvals"), 303)
