"""Schemas for a session's checkpoints, events and tree."""

import re

from marshmallow import Schema, ValidationError, fields, validate

from models.enums import SessionStatus

BIGINT_MAX = 2**63 - 1
_PLAIN_DIGITS = re.compile(r"[0-9]{1,19}")
CURSOR_RULE = f"a plain non-negative integer: ASCII digits only, at most {BIGINT_MAX}"


def parse_cursor(value) -> int:
    """An event sequence number sent by a client (`after`, `Last-Event-ID`), or ValueError.

    Only ASCII digits: not `1e3`, ` 1`, `+1`, `-1`, `1.0`, or `²` (which `str.isdigit`
    accepts and `int` refuses), and within PostgreSQL's bigint."""
    if isinstance(value, bool):
        raise ValueError(f"Must be {CURSOR_RULE}.")
    text = str(value) if isinstance(value, int) else value
    if not isinstance(text, str) or not _PLAIN_DIGITS.fullmatch(text) or int(text) > BIGINT_MAX:
        raise ValueError(f"Must be {CURSOR_RULE}.")
    return int(text)


class Cursor(fields.Integer):
    """An integer query argument parsed by `parse_cursor` (documented as an integer)."""

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return parse_cursor(value)
        except ValueError as error:
            raise ValidationError(str(error)) from error


class CheckpointSchema(Schema):
    id = fields.Integer()
    task_id = fields.String(allow_none=True)
    sequence = fields.Integer()
    kind = fields.String()
    data = fields.Dict()
    created_at = fields.DateTime()


class EventSchema(Schema):
    id = fields.Integer()
    seq = fields.Integer(
        metadata={"description": "The event's number in its session (1, 2, …, in commit order); "
                  "the SSE `id`, `Last-Event-ID` and `after` refer to it."}
    )  # fmt: skip
    type = fields.String()
    task_id = fields.String(allow_none=True)
    agent_id = fields.String(allow_none=True)
    data = fields.Dict()
    created_at = fields.DateTime()


class EventPageSchema(Schema):
    items = fields.List(fields.Nested(EventSchema))
    next_after = fields.Integer(
        metadata={"description": "The last `seq` of the page: pass as `after` for the next one."}
    )


class EventQuerySchema(Schema):
    after = Cursor(
        load_default=0,
        validate=validate.Range(min=0, max=BIGINT_MAX),  # documents the bounds in OpenAPI
        metadata={"description": "Only events with a larger `seq`."},
    )
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
