"""The dashboard's forms (POST, each with the session's CSRF token): sign in and out, session
actions, checkpoint restore, agent maintenance, plan preview and submit. They call the
services the API calls and answer with a redirect (303) back to the page."""

from __future__ import annotations

import json
import logging

from flask import current_app, flash, redirect, render_template, request, url_for
from marshmallow import ValidationError

from app.api.sessions import enqueue_launch
from app.engine import lifecycle
from app.extensions import db
from app.schemas.plans import PlanRequestSchema
from app.schemas.sessions import SessionCreateSchema
from app.services import agents as agent_service
from app.services import planning as planning_service
from app.services import sessions as session_service
from app.services.errors import DomainError
from models import InvalidTransition

from .auth import check_csrf, require, sign_in, sign_out
from .blueprint import blp
from .pages import ACTIONS

logger = logging.getLogger(__name__)


@blp.before_request
def _csrf():
    if request.method == "POST":
        check_csrf()


def _safe_next(target: str) -> str:
    """Only a path inside the dashboard, never another site."""
    return target if target.startswith("/ui/") and not target.startswith("//") else ""


@blp.post("/login")
def login_post():
    """Sign in with an API token."""
    if sign_in(request.form.get("token", "")) is None:
        return render_template("login.html", error="That token is invalid or revoked.",
                               next=request.form.get("next", "")), 401  # fmt: skip
    return redirect(_safe_next(request.form.get("next", "")) or url_for("ui.sessions"), 303)


@blp.post("/logout")
def logout():
    """Sign out."""
    sign_out()
    return redirect(url_for("ui.login"), 303)


@blp.post("/sessions/<session_id>/actions/<action>")
def session_action(session_id: str, action: str):
    """Pause, resume, cancel, stop or retry a session."""
    principal = require("write")
    if action not in ACTIONS:
        return render_template("error.html", code=404, message=f"No action '{action}'."), 404
    try:
        with db.session.begin():
            session, launches = lifecycle.apply_action(db.session, session_id, action)
    except InvalidTransition as error:
        flash(str(error), "error")
    else:
        if launches:
            enqueue_launch(session)
        logger.info("ui action=%s session_id=%s token_id=%s", action, session_id,
                    principal.token_id)  # fmt: skip
        flash(f"{action.capitalize()}: the session is {session.status.value}.", "info")
    return redirect(url_for("ui.session_detail", session_id=session_id), 303)


@blp.post("/sessions/<session_id>/checkpoints/<int:checkpoint_id>/restore")
def restore(session_id: str, checkpoint_id: int):
    """Restore a session to a checkpoint and run the rest again."""
    principal = require("write")
    try:
        with db.session.begin():
            session = lifecycle.restore_checkpoint(db.session, session_id, checkpoint_id)
    except InvalidTransition as error:
        flash(str(error), "error")
    else:
        enqueue_launch(session)
        logger.info("ui restore session_id=%s checkpoint_id=%s token_id=%s", session_id,
                    checkpoint_id, principal.token_id)  # fmt: skip
        flash(f"Restored to checkpoint {checkpoint_id}: the session is queued.", "info")
    return redirect(url_for("ui.session_detail", session_id=session_id), 303)


@blp.post("/agents/<agent_id>/maintenance")
def maintenance(agent_id: str):
    """Turn an agent's maintenance on or off."""
    require("write")
    on = request.form.get("on") == "1"
    reason = (request.form.get("reason") or "").strip()[:500] or None
    with db.session.begin():
        agent = agent_service.set_maintenance(db.session, agent_id, on, reason)
    from tasks.recovery import wake_blocked

    wake_blocked()
    flash(f"{agent.name}: maintenance {'on' if on else 'off'}.", "info")
    return redirect(url_for("ui.agents"), 303)


def _form() -> dict:
    return {name: request.form.get(name, "") for name in ("title", "prompt", "dag")}


@blp.post("/submit/preview")
def preview():
    """Plan a prompt as POST /api/v1/plans does and draw it; nothing runs yet."""
    require("write")
    form = _form()
    try:
        args = PlanRequestSchema().load({"prompt": form["prompt"], "title": form["title"] or None})
    except ValidationError as error:
        return render_template("submit.html", preview=None, form=form, error=error.messages), 422
    agent = None
    if args["planner"] == "auto":
        with db.session.begin():
            agent = planning_service.find_planner_agent(db.session)
    proposed = planning_service.propose_plan(
        args["prompt"], title=args["title"], target_level=args["target_level"],
        max_depth=args["max_depth"], agent=agent, workdir=args["workdir"],
    )  # fmt: skip
    shown = planning_service.preview(proposed)
    form["title"] = form["title"] or shown["title"]
    form["dag"] = json.dumps(shown["dag"], indent=2)
    return render_template("submit.html", preview=shown, form=form, error=None)


def _payload(form: dict) -> dict:
    payload = {"title": form["title"] or None, "prompt": form["prompt"]}
    if form["dag"].strip():
        try:
            payload["dag"] = json.loads(form["dag"])
        except json.JSONDecodeError as error:
            raise ValidationError({"dag": [f"Not JSON: {error}"]}) from error
    return {key: value for key, value in payload.items() if value is not None}


@blp.post("/submit")
def submit():
    """Create and start a session from the form (its DAG, or its prompt planned)."""
    require("write")
    form = _form()
    try:
        data = SessionCreateSchema().load(_payload(form))
    except ValidationError as error:
        return render_template("submit.html", preview=None, form=form, error=error.messages), 422
    if "dag" not in data:
        proposed = planning_service.propose_plan(data["prompt"], title=data.get("title"))
        data = planning_service.planned_session_data(data, proposed)
    try:
        with db.session.begin():
            session, _ = session_service.create_session(
                db.session, data, workspace_root=current_app.config["WORKSPACE_ROOT"]
            )
            session_service.start_session(db.session, session)
    except DomainError as error:
        errors = error.errors or {"": [error.message]}
        return render_template("submit.html", preview=None, form=form, error=errors), error.status
    enqueue_launch(session)
    return redirect(url_for("ui.session_detail", session_id=session.id), 303)
