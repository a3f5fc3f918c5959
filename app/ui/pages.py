"""The dashboard's pages (GET): sign-in, sessions, one session, agents, submit; and the JSON
snapshots the pages refresh themselves from when their stream says something changed."""

from __future__ import annotations

from flask import Response, jsonify, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from app.extensions import db
from app.services.errors import DomainError, ValidationFailed
from models.enums import SessionStatus, SessionType

from . import palette, queries
from .auth import can, csrf_token, current_principal, require
from .blueprint import blp

ACTIONS = ("pause", "resume", "cancel", "stop", "retry")
# What `engine.lifecycle.restore_checkpoint` accepts.
RESTORABLE = ("failed", "timeout", "stopped", "paused")
FILTERS = ("status", "type", "tag", "text")


@blp.app_template_global()
def ui_csrf_token() -> str:
    return csrf_token()


@blp.context_processor
def _globals() -> dict:
    return {"principal": current_principal(), "can_write": can("write"),
            "colours": palette.STATUS_COLOURS}  # fmt: skip


@blp.errorhandler(DomainError)
def _domain_error(error: DomainError):
    return render_template("error.html", code=error.status, message=error.message), error.status


@blp.errorhandler(HTTPException)
def _http_error(error: HTTPException):
    """A page that needs a sign-in sends the browser to the form; the rest get an error page
    (or plain text, for streams and JSON)."""
    wants_page = request.method == "GET" and request.accept_mimetypes.accept_html
    if error.code == 401 and wants_page:
        return redirect(url_for("ui.login", next=request.full_path.rstrip("?")))
    if not wants_page and request.method == "GET":
        return Response(error.description, status=error.code, mimetype="text/plain")
    return render_template("error.html", code=error.code, message=error.description), error.code


@blp.after_request
def _headers(response: Response) -> Response:
    """The pages load only their own scripts; no one frames them."""
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
        " img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


@blp.get("/palette.css")
def palette_css():
    """The status colours as CSS (app/ui/palette.py is their one source)."""
    return Response(palette.css(), mimetype="text/css", headers={"Cache-Control": "max-age=300"})


@blp.get("/login")
def login():
    """The sign-in form."""
    if current_principal() is not None:
        return redirect(url_for("ui.sessions"))
    return render_template("login.html", error=None, next=request.args.get("next", ""))


def _page_args() -> dict:
    """The list's filters and page from the query string; a bad page number is a 400."""
    args = request.args
    try:
        page = max(1, int(args.get("page", "1")))
    except ValueError as error:
        raise ValidationFailed("page must be a number.", {"page": ["Not a number."]}) from error
    filters = {name: (args.get(name) or "").strip() or None for name in FILTERS}
    return {**filters, "page": page}


@blp.get("/")
def sessions():
    """Sessions: counts by status, filters, one page of rows; live."""
    require("read")
    args = _page_args()
    with db.session.begin():
        data = queries.sessions_page(db.session, **args)
    filters = {name: value for name, value in args.items() if value and name != "page"}
    page = data["page"]
    pages = {
        "prev": url_for("ui.sessions", **filters, page=page - 1) if page > 1 else None,
        "next": url_for("ui.sessions", **filters, page=page + 1) if page < data["pages"] else None,
    }
    return render_template("sessions.html", data=data, args=args, pages=pages,
                           statuses=[s.value for s in SessionStatus],
                           types=[t.value for t in SessionType])  # fmt: skip


@blp.get("/sessions.json")
def sessions_json():
    """The list's rows and counts for its filters (what the page re-renders on a change)."""
    require("read")
    with db.session.begin():
        return jsonify(queries.sessions_page(db.session, **_page_args()))


def _session_data(session_id: str) -> dict:
    with db.session.begin():
        data = queries.session_page(db.session, db.reader, session_id)
    writable = can("write")
    data["actions"] = [a for a in ACTIONS if writable and a in data["allowed_actions"]]
    data["can_restore"] = writable and data["session"]["status"] in RESTORABLE
    return data


@blp.get("/sessions/<session_id>")
def session_detail(session_id: str):
    """One session: its DAG, Gantt, selected task, events, checkpoints and actions; live."""
    require("read")
    return render_template("session.html", data=_session_data(session_id))


@blp.get("/sessions/<session_id>/state.json")
def session_state_json(session_id: str):
    """The session page's data, which it reconciles itself with after events."""
    require("read")
    return jsonify(_session_data(session_id))


@blp.get("/agents")
def agents():
    """Agents: load, tier, health, failure streak, current tasks, maintenance."""
    require("read")
    with db.session.begin():
        rows = queries.agents_page(db.session)
    return render_template("agents.html", agents=rows)


@blp.get("/submit")
def submit_form():
    """Submit: a prompt to preview as a plan, or a DAG to paste."""
    require("read")
    return render_template("submit.html", preview=None, form={}, error=None)
