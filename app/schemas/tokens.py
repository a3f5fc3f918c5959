"""Schemas for API tokens."""

from marshmallow import Schema, fields, validate

from app.services.tokens import SCOPES


class TokenCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    scopes = fields.List(
        fields.String(validate=validate.OneOf(SCOPES)),
        required=True,
        validate=validate.Length(min=1, max=len(SCOPES)),
        metadata={"description": "admin implies write, write implies read."},
    )


class TokenSchema(Schema):
    id = fields.String(dump_only=True)
    name = fields.String(dump_only=True)
    prefix = fields.String(
        dump_only=True, metadata={"description": "The token's first characters."}
    )
    scopes = fields.List(fields.String(), dump_only=True)
    created_at = fields.DateTime(dump_only=True)
    last_used_at = fields.DateTime(dump_only=True, allow_none=True)
    revoked_at = fields.DateTime(dump_only=True, allow_none=True)


class TokenCreatedSchema(TokenSchema):
    token = fields.String(
        dump_only=True, metadata={"description": "The secret; shown this once, never stored."}
    )


class TokenQuerySchema(Schema):
    include_revoked = fields.Boolean(load_default=False)
