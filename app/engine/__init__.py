"""The execution engine: how a session's DAG runs on agents.

`launch` starts a session under a new epoch; `dispatch` decides what can run and `canvas`
turns it into Celery signatures; `claim` routes a task and takes it; `runner` holds an agent
slot and the attempt's lease while a driver works; `attempts` starts, renews and releases an
attempt; `outcome` records what it produced; `lifecycle` and `recovery` are the operator's and
the reconciler's actions. Row locks are taken through `locking`, in one order.
"""
