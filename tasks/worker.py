"""The Celery application for `celery -A tasks.worker …` (worker, beat and Flower)."""

from celery.signals import worker_init, worker_process_init

from app import create_app
from app.extensions import db
from app.sandbox import hide_worker_from_commands

flask_app = create_app()
celery = flask_app.extensions["celery"]
app = celery


@worker_process_init.connect
def _fresh_pool_after_fork(**_kwargs) -> None:
    """A forked pool process must not share the parent's database connections."""
    db.dispose()


@worker_init.connect
def _hide_from_commands(**_kwargs) -> None:
    """Commands that run as the worker's own user must not read its environment."""
    hide_worker_from_commands()
