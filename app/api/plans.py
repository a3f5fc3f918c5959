"""Plans: preview how a request would be decomposed into a DAG, without running it."""

from flask.views import MethodView
from flask_smorest import Blueprint

from app.extensions import db
from app.schemas.common import ErrorResponseSchema
from app.schemas.plans import PlanPreviewSchema, PlanRequestSchema
from app.services import planning as planning_service

blp = Blueprint("plans", __name__, url_prefix="/api/v1/plans", description="Plan previews.")


@blp.route("")
class Plans(MethodView):
    @blp.arguments(PlanRequestSchema)
    @blp.response(200, PlanPreviewSchema)
    @blp.alt_response(422, schema=ErrorResponseSchema, description="The request cannot be planned.")
    def post(self, args):
        """Preview the DAG a request would be planned into

        Tasks with estimates and levels, edges, the critical path, the expected makespan, and
        which planner made it and why (the planner agent when one is registered, else the
        heuristics).
        """
        agent = None
        if args["planner"] == "auto":
            with db.session.begin():
                agent = planning_service.find_planner_agent(db.session)
        proposed = planning_service.propose_plan(
            args["prompt"],
            title=args["title"],
            target_level=args["target_level"],
            max_depth=args["max_depth"],
            agent=agent,
            workdir=args["workdir"],
        )
        return planning_service.preview(proposed)
