"""A session's DAG: nodes with status, edges, levels and critical path, or DOT / Mermaid text."""

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint

from app.extensions import db
from app.schemas.common import ErrorResponseSchema
from app.schemas.plans import DagQuerySchema, SessionDagSchema
from app.services import session_dag as dag_service

blp = Blueprint("session_dag", __name__, url_prefix="/api/v1/sessions", description="Session DAGs.")


@blp.route("/<session_id>/dag")
class SessionDag(MethodView):
    @blp.arguments(DagQuerySchema, location="query")
    @blp.response(200, SessionDagSchema)
    @blp.doc(responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    @blp.alt_response(404, schema=ErrorResponseSchema, description="No such session.")
    def get(self, args, session_id):
        """Get a session's DAG: nodes, edges, levels and critical path

        With `?format=dot` or `?format=mermaid`, the DAG as text/plain Graphviz DOT or Mermaid,
        each node labelled with its status; the critical path is weighted by `estimate_hours`
        (1 h when a task has none).
        """
        if args["format"] == "json":
            return dag_service.session_dag(db.session, session_id)
        text = dag_service.session_dag_text(db.session, session_id, args["format"])
        return Response(text, mimetype="text/plain")
