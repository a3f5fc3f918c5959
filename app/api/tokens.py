"""API tokens: list, create (the secret is returned once) and revoke them (admin scope)."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from app.extensions import db
from app.schemas.common import ErrorResponseSchema
from app.schemas.tokens import TokenCreatedSchema, TokenCreateSchema, TokenQuerySchema, TokenSchema
from app.services import tokens as token_service

blp = Blueprint(
    "tokens", __name__, url_prefix="/api/v1/tokens",
    description="API tokens and their scopes (admin scope).",
)  # fmt: skip


@blp.route("")
class Tokens(MethodView):
    @blp.arguments(TokenQuerySchema, location="query")
    @blp.response(200, TokenSchema(many=True))
    def get(self, args):
        """List tokens (never their secrets)"""
        return token_service.list_tokens(db.session, args["include_revoked"])

    @blp.arguments(TokenCreateSchema)
    @blp.response(201, TokenCreatedSchema)
    def post(self, data):
        """Create a token; its secret is in this response only"""
        with db.session.begin():
            token, secret = token_service.create_token(db.session, data["name"], data["scopes"])
        return {**{name: getattr(token, name) for name in TokenSchema().fields}, "token": secret}


@blp.route("/<token_id>")
class TokenItem(MethodView):
    @blp.response(200, TokenSchema)
    @blp.alt_response(404, schema=ErrorResponseSchema, description="No such token.")
    def delete(self, token_id):
        """Revoke a token; it stops working at once"""
        with db.session.begin():
            token = token_service.revoke_token(db.session, token_id)
        return token
