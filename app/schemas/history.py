"""Schemas for a session's checkpoints, events and tree."""

from marshmallow import Schema, fields, validate

from models.enums import SessionStatus


class CheckpointSchema(Schema):
    id = fields.Integer()
    task_id = fields.String(allow_none=True)
    sequence = fields.Integer()
    kind = fields.String()
    data = fields.Dict()
    created_at = fields.DateTime()


class EventSchema(Schema):
    id = fields.Integer()
    type = fields.String()
    task_id = fields.String(allow_none=True)
    agent_id = fields.String(allow_none=True)
    data = fields.Dict()
    created_at = fields.DateTime()


class EventPageSchema(Schema):
    items = fields.List(fields.Nested(EventSchema))
    next_after = fields.Integer(metadata={"description": "Pass as `after` for the next page."})


class EventQuerySchema(Schema):
    after = fields.Integer(load_default=0, validate=validate.Range(min=0))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class SessionTreeSchema(Schema):
    id = fields.String()
    title = fields.String()
    status = fields.Enum(SessionStatus, by_value=True)
    children = fields.List(fields.Nested(lambda: SessionTreeSchema()))


class ActionResultSchema(Schema):
    id = fields.String()
    status = fields.Enum(SessionStatus, by_value=True)
    allowed_actions = fields.List(fields.String())
