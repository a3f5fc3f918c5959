"""Approvals: the inbox of decisions the engine waits for, and taking one."""

from __future__ import annotations

from flask import g
from flask.views import MethodView
from flask_smorest import Blueprint

from app.engine import approvals as engine_approvals
from app.extensions import db
from app.schemas.approvals import (
    ApprovalPageSchema,
    ApprovalQuerySchema,
    ApprovalSchema,
    DecisionSchema,
)
from app.schemas.common import ErrorResponseSchema
from app.services import approvals
from app.services.errors import NotFound
from models import Approval

from .sessions import enqueue_launch

blp = Blueprint("approvals", __name__, url_prefix="/api/v1", description="Approvals.")


def _page(args: dict, session_id: str | None = None) -> dict:
    items, total = approvals.list_approvals(db.session, session_id=session_id, **args)
    return {"items": items, "total": total, "page": args["page"], "page_size": args["page_size"]}


@blp.route("/approvals")
class Approvals(MethodView):
    @blp.arguments(ApprovalQuerySchema, location="query")
    @blp.response(200, ApprovalPageSchema)
    def get(self, args):
        """List approvals, oldest request first (status=pending: the inbox)"""
        return _page(args)


@blp.route("/sessions/<session_id>/approvals")
class SessionApprovals(MethodView):
    @blp.arguments(ApprovalQuerySchema, location="query")
    @blp.response(200, ApprovalPageSchema)
    @blp.alt_response(404, schema=ErrorResponseSchema, description="No such session.")
    def get(self, args, session_id):
        """List a session's approvals, oldest request first"""
        return _page(args, session_id)


@blp.route("/approvals/<approval_id>")
class ApprovalItem(MethodView):
    @blp.response(200, ApprovalSchema)
    @blp.alt_response(404, schema=ErrorResponseSchema, description="No such approval.")
    def get(self, approval_id):
        """Get an approval with its figures"""
        approval = db.session.get(Approval, approval_id)
        if approval is None:
            raise NotFound(f"Approval {approval_id} not found.")
        return approval

    @blp.arguments(DecisionSchema)
    @blp.response(200, ApprovalSchema)
    @blp.alt_response(404, schema=ErrorResponseSchema, description="No such approval.")
    @blp.alt_response(409, schema=ErrorResponseSchema, description="Already decided.")
    @blp.alt_response(422, schema=ErrorResponseSchema, description="Budget not above spent.")
    def post(self, data, approval_id):
        """Approve or reject: a gate runs or fails its task, a budget resumes or cancels"""
        principal = getattr(g, "principal", None)
        decide_and_dispatch(approval_id, data, principal.name if principal else "anonymous")
        return db.session.get(Approval, approval_id, populate_existing=True)


def decide_and_dispatch(approval_id: str, data: dict, decided_by: str) -> None:
    """Take a decision (a DecisionSchema's data) and send what it releases, after commit."""
    from tasks.helpers import apply_dispatch

    with db.session.begin():
        decided = engine_approvals.decide(
            db.session, approval_id, data["decision"], decided_by, data.get("comment"),
            data.get("budget"),
        )  # fmt: skip
    apply_dispatch(decided.dispatch)
    if decided.launch is not None:
        enqueue_launch(decided.launch)
