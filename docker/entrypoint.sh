#!/usr/bin/env bash
# Wait for PostgreSQL and Redis, migrate (web and release only), then run the named process.
set -euo pipefail

wait_for() {
  local name=$1 check=$2
  for _ in $(seq 1 60); do
    if eval "$check" >/dev/null 2>&1; then return 0; fi
    echo "waiting for $name…"; sleep 1
  done
  echo "$name is not reachable" >&2; exit 1
}

wait_for PostgreSQL "python -c \"import os,sqlalchemy as s; from app.config import _normalize_database_url as n; s.create_engine(n(os.environ['DATABASE_URL'])).connect().close()\""
wait_for Redis "python -c \"import os,redis; redis.Redis.from_url(os.environ['REDIS_URL']).ping()\""

# web, worker and beat write Prometheus metrics to one directory (a volume shared by their
# containers); the web /metrics endpoint merges them. Flower keeps its own metrics.
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-/tmp/orchestrator-metrics}"
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"

case "${1:-web}" in
  release) exec alembic upgrade head ;;
  web)     alembic upgrade head
           # gevent workers: an open event stream is a greenlet, not one of a few threads.
           exec gunicorn --worker-class gevent --workers "${WEB_CONCURRENCY:-2}" \
             --worker-connections "${WEB_CONNECTIONS:-1000}" --bind "0.0.0.0:${PORT:-5000}" wsgi:app ;;
  worker)  exec celery -A tasks.worker worker -Q control,agents -P threads -c "${WORKER_CONCURRENCY:-96}" -l info \
             --without-gossip --without-mingle ;;
  beat)    exec celery -A tasks.worker beat -l info -s /tmp/celerybeat-schedule ;;
  flower)  unset PROMETHEUS_MULTIPROC_DIR
           # Flower reads FLOWER_BASIC_AUTH itself: the password stays off the command line.
           : "${FLOWER_BASIC_AUTH:?set FLOWER_BASIC_AUTH=user:password}"
           exec celery -A tasks.worker flower --port="${FLOWER_PORT:-5555}" ;;
  *)       exec "$@" ;;
esac
