"""What the Celery broker (Redis) still holds, read by the reconciler to find lost messages."""

from __future__ import annotations

from app.locks.connection import redis_from_url

BROKER_QUEUES = ("agents", "control")
PRIORITY_STEPS = range(10)


def broker_messages(broker_url: str) -> str:
    """Every message the broker holds (queued or delivered but unacknowledged), as one text."""
    client = redis_from_url(broker_url, socket_timeout=5)
    try:
        keys = [
            queue if step == 0 else f"{queue}:{step}"
            for queue in BROKER_QUEUES
            for step in PRIORITY_STEPS
        ]
        pipe = client.pipeline()
        for key in keys:
            pipe.lrange(key, 0, -1)
        pipe.hvals("unacked")
        chunks = [item for result in pipe.execute() for item in result]
    finally:
        client.close()
    return "\n".join(chunk.decode("utf-8", "replace") for chunk in chunks)
