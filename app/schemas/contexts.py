"""Schemas for context entries, their history, diffs and merges."""

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.services.context_values import STRATEGIES
from app.services.contexts import KEY_PATTERN, SCOPES

KEY = validate.Regexp(KEY_PATTERN, error="Use 1-200 letters, digits, _ . : - characters.")
OWNER = validate.Length(min=1, max=36)


class OwnerQuerySchema(Schema):
    owner_id = fields.String(
        load_default=None, validate=OWNER, metadata={"description": "Session or agent id."}
    )


class ContextQuerySchema(OwnerQuerySchema):
    scope = fields.String(validate=validate.OneOf(SCOPES))
    prefix = fields.String(validate=validate.Length(max=200))


class DiffQuerySchema(OwnerQuerySchema):
    from_version = fields.Integer(data_key="from", required=True, validate=validate.Range(min=1))
    to_version = fields.Integer(data_key="to", required=True, validate=validate.Range(min=1))


class ContextWriteSchema(Schema):
    value = fields.Raw(required=True, allow_none=True)
    expected_version = fields.Integer(
        load_default=None,
        validate=validate.Range(min=0),
        metadata={"description": "Optimistic check: the version you read (0: must not exist)."},
    )
    source = fields.String(load_default=None, validate=validate.Length(max=200))
    ttl_seconds = fields.Integer(
        load_default=None, metadata={"description": "Temporary scope only (default 3600)."}
    )


class ContextRefSchema(Schema):
    scope = fields.String(required=True, validate=validate.OneOf(SCOPES))
    owner_id = fields.String(load_default=None, validate=OWNER)
    key = fields.String(required=True, validate=KEY)


class ContextMergeSchema(Schema):
    target = fields.Nested(ContextRefSchema, required=True)
    source = fields.Nested(ContextRefSchema, metadata={"description": "An entry to merge in."})
    value = fields.Raw(allow_none=True, metadata={"description": "Or a value to merge in."})
    strategy = fields.String(required=True, validate=validate.OneOf(STRATEGIES))
    expected_version = fields.Integer(load_default=None, validate=validate.Range(min=0))
    origin = fields.String(
        load_default=None,
        validate=validate.Length(max=200),
        metadata={"description": "Who produced the merged value (recorded in history)."},
    )

    @validates_schema
    def _one_input(self, data, **kwargs):
        if ("source" in data) == ("value" in data):
            raise ValidationError("Give either a source entry or a value.", "source")


class ContextResolveSchema(Schema):
    resolutions = fields.Dict(
        keys=fields.String(),
        values=fields.Raw(allow_none=True),
        load_default=dict,
        metadata={"description": "Value per conflict path (JSON Pointer)."},
    )
    default = fields.String(
        load_default=None,
        validate=validate.OneOf(["source", "target"]),
        metadata={"description": "Side taken for conflicts without a resolution."},
    )
    expected_version = fields.Integer(load_default=None, validate=validate.Range(min=0))


class ContextSchema(Schema):
    id = fields.Integer()
    scope = fields.String()
    owner_id = fields.String(allow_none=True)
    key = fields.String()
    value = fields.Raw(allow_none=True)
    version = fields.Integer()
    source = fields.String(allow_none=True)
    pending_merge = fields.Dict(
        allow_none=True,
        metadata={"description": "An unresolved manual merge: merged, conflicts, source."},
    )
    expires_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class ContextPageSchema(Schema):
    items = fields.List(fields.Nested(ContextSchema))
    total = fields.Integer()


class ContextVersionSchema(Schema):
    version = fields.Integer()
    value = fields.Raw(allow_none=True)
    strategy = fields.String(allow_none=True)
    source = fields.String(allow_none=True)
    conflicts = fields.List(fields.Dict())
    note = fields.String(allow_none=True)
    created_at = fields.DateTime()


class ContextHistorySchema(Schema):
    items = fields.List(fields.Nested(ContextVersionSchema))


class ContextDiffSchema(Schema):
    from_version = fields.Integer(data_key="from", attribute="from")
    to_version = fields.Integer(data_key="to", attribute="to")
    changes = fields.List(fields.Dict())
