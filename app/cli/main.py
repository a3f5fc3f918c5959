"""The `orchestrator` command: run the standalone stack; submit, watch, list, cancel and retry
sessions; register agents; manage API tokens; decide approvals.

Exit codes: see `app.cli.client`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import requests

from . import approvals, progress, tokens
from .client import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    SUCCEEDED,
    ApiClient,
    CliError,
    check,
    unreachable,
)  # fmt: skip


def _client(args) -> ApiClient:
    return ApiClient(args.api, args.token)


def _session_exit_code(session: dict) -> int:
    return EXIT_OK if session["status"] in SUCCEEDED else EXIT_FAILED


def _watch(args, session_id: str) -> int:
    client = _client(args)
    try:
        final = progress.watch(client.base_url, session_id, headers=client.headers)
    except requests.HTTPError as error:
        check(error.response)
        raise
    except requests.RequestException as error:
        raise unreachable(client.base_url, error) from error
    return _session_exit_code(final)


def _read_json(path: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CliError(f"cannot read {path}: {error}", EXIT_USAGE) from error


def cmd_submit(args) -> int:
    """Submit a session from a JSON file (title, prompt, dag) or from a prompt to be planned."""
    if bool(args.file) == bool(args.prompt):
        raise CliError("give either a JSON FILE or --prompt TEXT", EXIT_USAGE)
    body = _read_json(args.file) if args.file else {"prompt": args.prompt}
    if args.title:
        body["title"] = args.title
    body.setdefault("title", (body.get("prompt") or "session")[:80])
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
    session = _client(args).call("POST", "/api/v1/sessions", json=body, headers=headers)
    print(session["id"], flush=True)
    return _watch(args, session["id"]) if args.watch else EXIT_OK


def cmd_watch(args) -> int:
    """Show a session's progress until it finishes."""
    return _watch(args, args.session_id)


def cmd_list(args) -> int:
    """List sessions, newest first."""
    params = {"page": args.page, "page_size": args.page_size}
    if args.status:
        params["status"] = args.status
    page = _client(args).call("GET", "/api/v1/sessions", params=params)
    if args.json:
        print(json.dumps(page, indent=2))
        return EXIT_OK
    for session in page["items"]:
        counts = session.get("progress", {}).get("by_status", {})
        done = sum(counts.get(s, 0) for s in progress.DONE)
        total = session.get("progress", {}).get("total", 0)
        print(f"{session['id']}  {session['status']:<19} {done:>3}/{total:<3} "
              f"{session['created_at'][:19]}  {session['title']}")  # fmt: skip
    print(f"({len(page['items'])} of {page['total']})", file=sys.stderr)
    return EXIT_OK


def cmd_action(args) -> int:
    """Cancel or retry a session."""
    result = _client(args).call("POST", f"/api/v1/sessions/{args.session_id}/{args.action}")
    print(f"{result['id']} {result['status']}")
    return _watch(args, args.session_id) if getattr(args, "watch", False) else EXIT_OK


def cmd_agents_list(args) -> int:
    """List registered agents."""
    agents = _client(args).call("GET", "/api/v1/agents")
    if args.json:
        print(json.dumps(agents, indent=2))
        return EXIT_OK
    for agent in agents:
        print(f"{agent['id']}  {agent['name']:<24} {agent['driver']:<8} {agent['status']:<9} "
              f"capacity {agent['capacity']}  {', '.join(agent['capabilities'])}")  # fmt: skip
    return EXIT_OK


def cmd_agents_register(args) -> int:
    """Register an agent from flags or a JSON file (flags override the file)."""
    body = _read_json(args.file) if args.file else {}
    flags = {"name": args.name, "type": args.type, "driver": args.driver,
             "endpoint": args.endpoint, "model": args.model, "capacity": args.capacity,
             "capabilities": args.capability}  # fmt: skip
    body.update({key: value for key, value in flags.items() if value})
    missing = [key for key in ("name", "type", "driver", "capabilities") if not body.get(key)]
    if missing:
        raise CliError(f"missing {', '.join(missing)} (flags or --file)", EXIT_USAGE)
    agent = _client(args).call("POST", "/api/v1/agents", json=body)
    print(f"{agent['id']} {agent['name']}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `orchestrator` command."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except CliError as error:
        print(f"orchestrator: {error}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        return 130


def cmd_standalone(args) -> int:
    """Start everything, submit the example session, watch it, serve until Ctrl-C."""
    from app.standalone.stack import run_standalone

    return run_standalone(Path(args.home).resolve(), args.port, example=not args.no_example)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="orchestrator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--api",
        default=os.environ.get("ORCH_API_URL", "http://127.0.0.1:5000"),
        help="the API's base URL (env ORCH_API_URL)",
    )
    parser.add_argument(
        "--token", default=os.environ.get("ORCH_TOKEN"), help="an API token (env ORCH_TOKEN)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    standalone = commands.add_parser("standalone", help="run the whole stack on this machine")
    standalone.add_argument("--home", default=os.environ.get("ORCH_HOME", ".standalone"))
    standalone.add_argument("--port", type=int, default=int(os.environ.get("ORCH_PORT", "5000")))
    standalone.add_argument("--no-example", action="store_true", help="do not submit the example")
    standalone.set_defaults(handler=cmd_standalone)

    submit = commands.add_parser("submit", help="submit a session from a JSON file or a prompt")
    submit.add_argument("file", nargs="?", help="JSON with title, prompt and optionally dag")
    submit.add_argument("--prompt", help="plan a session from this request instead of a file")
    submit.add_argument("--title")
    submit.add_argument("--watch", action="store_true", help="show progress until it ends")
    submit.add_argument("--idempotency-key")
    submit.set_defaults(handler=cmd_submit)

    watch = commands.add_parser("watch", help="show a session's progress until it ends")
    watch.add_argument("session_id")
    watch.set_defaults(handler=cmd_watch)

    listing = commands.add_parser("list", help="list sessions, newest first")
    listing.add_argument("--status")
    listing.add_argument("--page", type=int, default=1)
    listing.add_argument("--page-size", type=int, default=20)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_list)

    for action, text in (("cancel", "cancel a session"), ("retry", "retry what did not complete")):
        sub = commands.add_parser(action, help=text)
        sub.add_argument("session_id")
        if action == "retry":
            sub.add_argument("--watch", action="store_true")
        sub.set_defaults(handler=cmd_action, action=action)

    agents = commands.add_parser("agents", help="list or register agents")
    agent_commands = agents.add_subparsers(dest="agents_command", required=True)
    agents_list = agent_commands.add_parser("list", help="list agents")
    agents_list.add_argument("--json", action="store_true")
    agents_list.set_defaults(handler=cmd_agents_list)
    register = agent_commands.add_parser("register", help="register an agent")
    register.add_argument("--file", help="JSON body of the agent (flags override it)")
    register.add_argument("--name")
    register.add_argument("--type", help="architect, implementer, reviewer, …")
    register.add_argument("--driver", help="shell or opencode")
    register.add_argument("--capability", action="append", help="repeat for each capability")
    register.add_argument("--endpoint", help="the OpenCode server's URL")
    register.add_argument("--model")
    register.add_argument("--capacity", type=int)
    register.set_defaults(handler=cmd_agents_register)

    tokens.add_commands(commands)
    approvals.add_commands(commands)
    return parser
