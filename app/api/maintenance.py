"""Maintenance (beat) jobs: each job's schedule, last run and outcome; run one now (admin)."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint
from kombu.exceptions import OperationalError

from app.extensions import db
from app.schemas.common import ErrorResponseSchema
from app.schemas.maintenance import JobRunQuerySchema, JobRunSchema, JobSchema, JobTriggeredSchema
from app.services import beat_jobs
from app.services.errors import DomainError, NotFound

blp = Blueprint(
    "maintenance", __name__, url_prefix="/api/v1/maintenance",
    description="Beat jobs that keep the system healthy (admin scope).",
)  # fmt: skip


class BrokerUnavailable(DomainError):
    status = 503


def _schedule() -> dict:
    return dict(current_app.extensions["celery"].conf.beat_schedule or {})


def _known_job(job: str) -> dict:
    for entry in _schedule().values():
        if entry["task"] == job:
            return entry
    if beat_jobs.list_runs(db.session, job, limit=1):
        return {}
    raise NotFound(f"No beat job named '{job}'.")


@blp.route("/jobs")
class Jobs(MethodView):
    @blp.response(200, JobSchema(many=True))
    def get(self):
        """Every beat job with its schedule, last run and outcome"""
        return beat_jobs.overview(db.session, _schedule())


@blp.route("/jobs/<job>/runs")
class JobRuns(MethodView):
    @blp.arguments(JobRunQuerySchema, location="query")
    @blp.response(200, JobRunSchema(many=True))
    @blp.alt_response(404, schema=ErrorResponseSchema, description="No such job.")
    def get(self, args, job):
        """The newest runs of one job"""
        _known_job(job)
        return beat_jobs.list_runs(db.session, job, args["limit"])


@blp.route("/jobs/<job>/run")
class RunJob(MethodView):
    @blp.response(202, JobTriggeredSchema)
    @blp.alt_response(404, schema=ErrorResponseSchema, description="No such job.")
    @blp.alt_response(503, schema=ErrorResponseSchema, description="The broker is unreachable.")
    def post(self, job):
        """Run a scheduled job now, with its scheduled arguments"""
        entry = _known_job(job)
        if not entry:
            raise NotFound(f"'{job}' is not in the beat schedule.")
        celery = current_app.extensions["celery"]
        try:
            result = celery.send_task(job, args=entry.get("args", ()), kwargs=entry.get("kwargs"))
        except OperationalError as error:
            raise BrokerUnavailable(
                f"The broker is unreachable: {type(error).__name__}."
            ) from error
        return {"job": job, "celery_task_id": result.id}
