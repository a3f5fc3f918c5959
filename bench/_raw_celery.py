"""A bare Celery app with a no-op task: the baseline our orchestrator is compared with."""

import os

from celery import Celery

app = Celery("raw", broker=os.environ["REDIS_URL"], backend=os.environ["REDIS_URL"])
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=1, task_default_queue="raw")


@app.task(name="raw.noop")
def noop(*_args):
    """Do nothing."""
    return None
