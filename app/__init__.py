"""The application factory: config, extensions, Celery, API blueprints, error handlers."""

from __future__ import annotations

import logging

from flask import Flask
from flask_smorest import Api

from .api import register_blueprints
from .celery_app import celery_init_app
from .config import load_config
from .errors import register_error_handlers
from .extensions import db


def create_app(overrides: dict | None = None) -> Flask:
    """Build the Flask app; nothing happens at import time."""
    app = Flask(__name__)
    app.config.update(load_config(overrides))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    db.init(app.config["DATABASE_URL"], pool_size=app.config["DB_POOL_SIZE"])
    app.teardown_request(lambda _exc: db.session.remove())
    app.teardown_appcontext(lambda _exc: db.session.remove())
    celery_init_app(app)
    api = Api(app)
    register_blueprints(api)
    register_error_handlers(app)
    return app
