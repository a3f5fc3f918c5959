"""Schemas for agents."""

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from models.enums import AgentCapability, AgentDriver, AgentStatus, AgentType

NAME = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", error="Use letters, digits, _ . -")


class AgentCreateSchema(Schema):
    name = fields.String(required=True, validate=NAME)
    type = fields.Enum(AgentType, by_value=True, required=True)
    capabilities = fields.List(
        fields.Enum(AgentCapability, by_value=True),
        required=True,
        validate=validate.Length(min=1),
    )
    driver = fields.Enum(AgentDriver, by_value=True, required=True)
    endpoint = fields.Url(require_tld=False, schemes={"http", "https"}, load_default=None)
    model = fields.String(load_default=None, validate=validate.Length(max=200))
    config = fields.Dict(load_default=dict, metadata={"description": "Driver settings (secret)."})
    capacity = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100))
    preferred_technologies = fields.List(fields.String(), load_default=list)
    avoided_technologies = fields.List(fields.String(), load_default=list)
    maintenance = fields.Boolean(load_default=False)

    @validates_schema
    def _endpoint_for_opencode(self, data, **kwargs):
        if data.get("driver") is AgentDriver.OPENCODE and not data.get("endpoint"):
            raise ValidationError("An opencode agent needs the URL of its server.", "endpoint")


class AgentSchema(Schema):
    id = fields.String(dump_only=True)
    name = fields.String()
    type = fields.Enum(AgentType, by_value=True)
    capabilities = fields.List(fields.String())
    driver = fields.Enum(AgentDriver, by_value=True)
    endpoint = fields.String(allow_none=True)
    model = fields.String(allow_none=True)
    capacity = fields.Integer()
    preferred_technologies = fields.List(fields.String())
    avoided_technologies = fields.List(fields.String())
    maintenance = fields.Boolean()
    status = fields.Enum(AgentStatus, by_value=True, dump_only=True)
    last_heartbeat_at = fields.DateTime(dump_only=True, allow_none=True)
    tasks_completed = fields.Integer(dump_only=True)
    tasks_failed = fields.Integer(dump_only=True)
    total_duration_seconds = fields.Float(dump_only=True)
    total_tokens = fields.Integer(dump_only=True)
    total_cost = fields.Float(dump_only=True)
    created_at = fields.DateTime(dump_only=True)


class AgentQuerySchema(Schema):
    type = fields.Enum(AgentType, by_value=True)
    capability = fields.Enum(AgentCapability, by_value=True)
    status = fields.Enum(AgentStatus, by_value=True)
