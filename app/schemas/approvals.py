"""Schemas for budgets, approval policies and approvals."""

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from models import ApprovalKind, ApprovalStatus

from .common import PageArgsSchema


class BudgetSchema(Schema):
    max_tokens = fields.Integer(validate=validate.Range(min=1), allow_none=True)
    max_cost_usd = fields.Float(validate=validate.Range(min=0, min_inclusive=False),
                                allow_none=True)  # fmt: skip
    max_agent_seconds = fields.Float(validate=validate.Range(min=0, min_inclusive=False),
                                     allow_none=True)  # fmt: skip


def budget_field(what: str) -> fields.Nested:
    """An optional budget; `{}` is none."""
    return fields.Nested(
        BudgetSchema, load_default=dict,
        metadata={"description": f"Limits over all of {what}'s attempts: max_tokens, "
                  "max_cost_usd, max_agent_seconds. Reaching one pauses the session (reason "
                  "budget) and opens a budget approval."},
    )  # fmt: skip


class ApprovalPolicySchema(Schema):
    expires_in_seconds = fields.Integer(validate=validate.Range(min=1, max=30 * 86400))
    default_decision = fields.String(
        load_default="reject", validate=validate.OneOf(["approve", "reject"])
    )


class SpentSchema(Schema):
    tokens = fields.Integer()
    cost_usd = fields.Float()
    agent_seconds = fields.Float()


class ApprovalSchema(Schema):
    id = fields.String()
    session_id = fields.String()
    task_id = fields.String(allow_none=True)
    kind = fields.Enum(ApprovalKind, by_value=True)
    status = fields.Enum(ApprovalStatus, by_value=True)
    requested_at = fields.DateTime()
    decided_at = fields.DateTime(allow_none=True)
    decided_by = fields.String(allow_none=True)
    comment = fields.String(allow_none=True)
    figures = fields.Dict()
    expires_at = fields.DateTime(allow_none=True)
    default_decision = fields.String(allow_none=True)


class ApprovalPageSchema(Schema):
    items = fields.List(fields.Nested(ApprovalSchema))
    total = fields.Integer()
    page = fields.Integer()
    page_size = fields.Integer()


class ApprovalQuerySchema(PageArgsSchema):
    status = fields.Enum(ApprovalStatus, by_value=True)


class DecisionSchema(Schema):
    decision = fields.String(required=True, validate=validate.OneOf(["approve", "reject"]))
    comment = fields.String(load_default=None, validate=validate.Length(max=4000))
    budget = fields.Nested(
        BudgetSchema, load_default=None,
        metadata={"description": "Approving a spent budget: the raised limits."},
    )  # fmt: skip

    @validates_schema
    def _budget_only_to_approve(self, data, **kwargs):
        if data.get("budget") and data["decision"] != "approve":
            raise ValidationError("A budget goes with approve only.", "budget")
