"""Celery tasks: thin wrappers that run one service call in one transaction, then enqueue."""
