"""The dashboard's blueprint, on which every view module registers its routes."""

from flask import Blueprint

blp = Blueprint(
    "ui", __name__, url_prefix="/ui", template_folder="templates",
    static_folder="static", static_url_path="/static",
)  # fmt: skip
