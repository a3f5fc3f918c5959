"""The dashboard under /ui/: server-rendered pages (Jinja), a signed session cookie, CSRF on
every form, one event stream per tab and JavaScript vendored from npm (`app/ui/vendor.py`)."""

from __future__ import annotations

from flask import Flask


def init_ui(app: Flask) -> None:
    """Serve the dashboard: its cookie settings, its views (they register on the blueprint)."""
    from . import actions, approvals, pages, streams  # noqa: F401
    from .auth import configure_cookies
    from .blueprint import blp

    configure_cookies(app)
    app.register_blueprint(blp)
