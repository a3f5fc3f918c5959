"""Celery wired to the Flask app: every task runs inside an app context (Flask's pattern)."""

from __future__ import annotations

from celery import Celery, Task
from flask import Flask

from .extensions import db


def celery_init_app(app: Flask) -> Celery:
    """Create the Celery app for this Flask app and register it as an extension."""

    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                try:
                    return self.run(*args, **kwargs)
                finally:
                    db.session.remove()

    celery = Celery(
        app.import_name, task_cls=FlaskTask, include=["tasks.sessions", "tasks.recovery"]
    )
    celery.config_from_object("celeryconfig")
    celery.conf.update(
        broker_url=app.config["CELERY_BROKER_URL"],
        result_backend=app.config["CELERY_RESULT_BACKEND"],
        task_always_eager=app.config["CELERY_TASK_ALWAYS_EAGER"],
    )
    celery.set_default()
    app.extensions["celery"] = celery
    return celery
