"""Schemas shared by several resources."""

from marshmallow import Schema, fields, validate


class ErrorResponseSchema(Schema):
    code = fields.Integer()
    status = fields.String()
    message = fields.String()
    errors = fields.Dict()
    # An invalid status change (409) also names the current status and what is allowed.
    current = fields.String()
    allowed = fields.List(fields.String())


class PageArgsSchema(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    page_size = fields.Integer(load_default=20, validate=validate.Range(min=1, max=200))
