"""Contexts: read, write, diff and merge the versioned entries that carry outputs along a DAG."""

from flask.views import MethodView
from flask_smorest import Blueprint

from app.extensions import db
from app.schemas.common import ErrorResponseSchema
from app.schemas.contexts import (
    ContextDiffSchema,
    ContextHistorySchema,
    ContextMergeSchema,
    ContextPageSchema,
    ContextQuerySchema,
    ContextResolveSchema,
    ContextSchema,
    ContextWriteSchema,
    DiffQuerySchema,
    OwnerQuerySchema,
)
from app.services import contexts as context_service

blp = Blueprint("contexts", __name__, url_prefix="/api/v1/contexts", description="Context entries.")


def _ref(body: dict) -> tuple:
    return body["scope"], body["owner_id"], body["key"]


@blp.route("")
class Contexts(MethodView):
    @blp.arguments(ContextQuerySchema, location="query")
    @blp.response(200, ContextPageSchema)
    def get(self, filters):
        """List live context entries, filtered by scope, owner and key prefix"""
        items = context_service.list_entries(db.session, **filters)
        return {"items": items, "total": len(items)}


@blp.route("/merge")
class ContextMerge(MethodView):
    @blp.arguments(ContextMergeSchema)
    @blp.response(200, ContextSchema)
    @blp.alt_response(409, schema=ErrorResponseSchema, description="Version or merge conflict.")
    def post(self, body):
        """Merge a value or another entry into an entry with a strategy

        `manual` keeps the value and lists the conflicts in `pending_merge` until a resolve.
        """
        with db.session.begin():
            return context_service.merge_entry(
                db.session,
                _ref(body["target"]),
                body["strategy"],
                value=body.get("value"),
                source_ref=_ref(body["source"]) if "source" in body else None,
                expected_version=body["expected_version"],
                source=body["origin"],
            )


@blp.route("/<scope>/<key>")
class ContextItem(MethodView):
    @blp.arguments(OwnerQuerySchema, location="query")
    @blp.response(200, ContextSchema)
    @blp.alt_response(404, schema=ErrorResponseSchema, description="No such entry.")
    def get(self, args, scope, key):
        """Get a context entry with its version"""
        return context_service.get_entry(db.session, scope, args["owner_id"], key)

    @blp.arguments(OwnerQuerySchema, location="query")
    @blp.arguments(ContextWriteSchema)
    @blp.response(200, ContextSchema)
    @blp.alt_response(201, schema=ContextSchema, description="Created.")
    @blp.alt_response(409, schema=ErrorResponseSchema, description="Version mismatch.")
    def put(self, args, body, scope, key):
        """Write a context entry; `expected_version` makes it fail with 409 if it changed"""
        with db.session.begin():
            entry, created = context_service.write_entry(
                db.session, scope, args["owner_id"], key, body["value"],
                expected_version=body["expected_version"], source=body["source"],
                ttl_seconds=body["ttl_seconds"],
            )  # fmt: skip
        return entry, 201 if created else 200


@blp.route("/<scope>/<key>/history")
class ContextHistory(MethodView):
    @blp.arguments(OwnerQuerySchema, location="query")
    @blp.response(200, ContextHistorySchema)
    @blp.alt_response(404, schema=ErrorResponseSchema, description="No such entry.")
    def get(self, args, scope, key):
        """Every version of a context entry, oldest first"""
        return {"items": context_service.history(db.session, scope, args["owner_id"], key)}


@blp.route("/<scope>/<key>/diff")
class ContextDiff(MethodView):
    @blp.arguments(DiffQuerySchema, location="query")
    @blp.response(200, ContextDiffSchema)
    @blp.alt_response(404, schema=ErrorResponseSchema, description="No such entry or version.")
    def get(self, args, scope, key):
        """What changed between two versions of a context entry (JSON Pointer paths)"""
        return context_service.diff_entry(
            db.session, scope, args["owner_id"], key, args["from_version"], args["to_version"]
        )


@blp.route("/<scope>/<key>/resolve")
class ContextResolve(MethodView):
    @blp.arguments(OwnerQuerySchema, location="query")
    @blp.arguments(ContextResolveSchema)
    @blp.response(200, ContextSchema)
    @blp.alt_response(409, schema=ErrorResponseSchema, description="Nothing to resolve.")
    def post(self, args, body, scope, key):
        """Resolve a pending manual merge: a value per conflict path, or a default side"""
        with db.session.begin():
            return context_service.resolve_entry(
                db.session, (scope, args["owner_id"], key), body["resolutions"],
                default=body["default"], expected_version=body["expected_version"],
            )  # fmt: skip
