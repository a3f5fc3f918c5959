"""Schemas for beat (maintenance) jobs and their runs."""

from marshmallow import Schema, fields, validate


class JobRunSchema(Schema):
    id = fields.Integer()
    job = fields.String()
    started_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
    outcome = fields.String(metadata={"description": "running, ok or failed."})
    details = fields.Dict()


class JobSchema(Schema):
    job = fields.String(metadata={"description": "The Celery task name of the job."})
    entry = fields.String(allow_none=True, metadata={"description": "Its beat_schedule entry."})
    schedule = fields.String(allow_none=True)
    schedule_seconds = fields.Float(allow_none=True)
    options = fields.Dict(metadata={"description": "Arguments the schedule passes."})
    last_run = fields.Nested(JobRunSchema, allow_none=True)
    last_success_at = fields.DateTime(allow_none=True)
    last_failure_at = fields.DateTime(allow_none=True)


class JobRunQuerySchema(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


class JobTriggeredSchema(Schema):
    job = fields.String()
    celery_task_id = fields.String()
