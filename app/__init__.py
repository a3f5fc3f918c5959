"""The application factory: config, logging, extensions, Celery, metrics, auth, API blueprints,
error handlers."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from .api import register_blueprints
from .api.auth import api_spec_kwargs, init_auth
from .api.errors import register_error_handlers
from .api.input_guard import init_input_guard
from .celery_app import celery_init_app
from .config import load_config
from .extensions import db
from .logging_config import configure_logging, hook_celery_logging
from .metrics import init_metrics
from .ui import init_ui


def create_app(overrides: dict | None = None) -> Flask:
    """Build the Flask app; nothing happens at import time."""
    app = Flask(__name__)
    app.config.update(load_config(overrides))
    configure_logging(app.config.get("LOG_FORMAT"), app.config.get("LOG_LEVEL"))
    hook_celery_logging()
    db.init(app.config["DATABASE_URL"], pool_size=app.config["DB_POOL_SIZE"])
    app.teardown_request(lambda _exc: db.session.remove())
    app.teardown_appcontext(lambda _exc: db.session.remove())
    celery_init_app(app)
    init_metrics(app)  # before auth, so that requests refused by auth are timed too
    api = Api(app, spec_kwargs=api_spec_kwargs(app.config))
    init_auth(app, api)
    init_input_guard(app)
    register_blueprints(api)
    init_ui(app)  # the dashboard under /ui/
    register_error_handlers(app)
    return app
