"""WSGI entry point: `gunicorn --worker-class gevent wsgi:app` (Procfile).

Under gevent workers (gunicorn has monkey-patched the process before loading this module),
psycopg2 is made to wait through gevent too, so a query yields to the other requests and
streams of the worker instead of blocking them all."""

import sys

if "gevent" in sys.modules:
    from gevent import monkey

    if monkey.is_module_patched("socket"):
        from psycogreen.gevent import patch_psycopg

        patch_psycopg()

from app import create_app  # noqa: E402

app = create_app()
