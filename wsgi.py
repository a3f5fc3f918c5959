"""WSGI entry point: `gunicorn --worker-class gevent wsgi:app` (Procfile).

Under gevent workers (gunicorn has monkey-patched the process before loading this module),
psycopg2 is made to wait through gevent too, so a query yields to the other requests and
streams of the worker instead of blocking them all; and every request first yields once, so
that a keep-alive connection whose next request is always already there cannot hold the
worker while the others wait (gthread hands a connection back to its poller the same way)."""

import sys

GEVENT = False
if "gevent" in sys.modules:
    from gevent import monkey

    if monkey.is_module_patched("socket"):
        from psycogreen.gevent import patch_psycopg

        patch_psycopg()
        GEVENT = True

from app import create_app  # noqa: E402

app = create_app()

if GEVENT:
    import gevent

    _handle = app.wsgi_app

    def _take_turns(environ, start_response):
        gevent.sleep(0)
        return _handle(environ, start_response)

    app.wsgi_app = _take_turns
