"""The `orchestrator` command: run the standalone stack, submit and watch sessions."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import requests

from . import progress

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3


def _api(args) -> str:
    return args.api.rstrip("/")


def _fail(message: str, code: int) -> int:
    print(f"orchestrator: {message}", file=sys.stderr)
    return code


def _session_exit_code(session: dict) -> int:
    return EXIT_OK if session["status"] in ("completed", "partially_completed") else EXIT_FAILED


def _raise_interrupt(signum, _frame) -> None:
    raise KeyboardInterrupt


def cmd_standalone(args) -> int:
    """Start everything, submit the example session, watch it, serve until Ctrl-C."""
    from .example import EXAMPLE_AGENTS, EXAMPLE_SESSION
    from .stack import Stack

    stack = Stack(home=Path(args.home).resolve(), api_port=args.port)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_interrupt)
    print("Starting the orchestrator (Ctrl-C stops everything)")
    try:
        stack.start_services()
        stack.migrate()
        stack.start_processes()
        user, _, password = stack.env["FLOWER_BASIC_AUTH"].partition(":")
        print(f"  API         {stack.api_url}   (docs: {stack.api_url}/api/docs)")
        print(f"  Flower      {stack.flower_url}   (user {user}, password {password})")
        print(f"  Logs        {stack.home}/*.log\n")
        if not args.no_example:
            session = submit_example(stack.api_url, EXAMPLE_AGENTS, EXAMPLE_SESSION)
            print(f"Example session {session['id']}:")
            final = progress.watch(stack.api_url, session["id"])
            print(f"\nThe example session ended {final['status']}; its files are in "
                  f"{final.get('workdir')}.")  # fmt: skip
        print(f"Serving. Submit more with: orchestrator submit --api {stack.api_url} FILE")
        while True:
            stack.check_children()
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nStopping…")
        return EXIT_OK
    except RuntimeError as error:
        return _fail(str(error), EXIT_FAILED)
    finally:
        stack.stop()


def submit_example(api_url: str, agents: list[dict], session: dict) -> dict:
    """Register the example agents (once) and submit the example session."""
    existing = {a["name"] for a in requests.get(f"{api_url}/api/v1/agents", timeout=10).json()}
    for agent in agents:
        if agent["name"] not in existing:
            requests.post(f"{api_url}/api/v1/agents", json=agent, timeout=10).raise_for_status()
    response = requests.post(f"{api_url}/api/v1/sessions", json=session, timeout=30)
    response.raise_for_status()
    return response.json()


def cmd_submit(args) -> int:
    """Submit a session from a JSON file (title, prompt, dag) and optionally watch it."""
    try:
        body = json.loads(Path(args.file).read_text())
    except (OSError, json.JSONDecodeError) as error:
        return _fail(f"cannot read {args.file}: {error}", EXIT_USAGE)
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
    try:
        response = requests.post(
            f"{_api(args)}/api/v1/sessions", json=body, headers=headers, timeout=30
        )
    except requests.RequestException as error:
        return _fail(f"the API at {_api(args)} is unreachable: {error}", EXIT_UNAVAILABLE)
    if response.status_code >= 400:
        detail = response.json() if response.content else {}
        return _fail(f"rejected ({response.status_code}): {json.dumps(detail)}", EXIT_USAGE)
    session = response.json()
    print(session["id"])
    if args.watch:
        return _session_exit_code(progress.watch(_api(args), session["id"]))
    return EXIT_OK


def cmd_watch(args) -> int:
    """Show a session's progress until it finishes."""
    try:
        return _session_exit_code(progress.watch(_api(args), args.session_id))
    except requests.HTTPError as error:
        return _fail(f"{error.response.status_code}: {error.response.text}", EXIT_USAGE)
    except requests.RequestException as error:
        return _fail(f"the API at {_api(args)} is unreachable: {error}", EXIT_UNAVAILABLE)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="orchestrator", description=__doc__)
    parser.add_argument(
        "--api", default=os.environ.get("ORCH_API_URL", "http://127.0.0.1:5000"),
        help="the API's base URL (env ORCH_API_URL)",
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)

    standalone = commands.add_parser("standalone", help="run the whole stack on this machine")
    standalone.add_argument("--home", default=os.environ.get("ORCH_HOME", ".standalone"))
    standalone.add_argument("--port", type=int, default=int(os.environ.get("ORCH_PORT", "5000")))
    standalone.add_argument("--no-example", action="store_true", help="do not submit the example")
    standalone.set_defaults(handler=cmd_standalone)

    submit = commands.add_parser("submit", help="submit a session from a JSON file")
    submit.add_argument("file")
    submit.add_argument("--watch", action="store_true", help="show progress until it ends")
    submit.add_argument("--idempotency-key")
    submit.set_defaults(handler=cmd_submit)

    watch = commands.add_parser("watch", help="show a session's progress until it ends")
    watch.add_argument("session_id")
    watch.set_defaults(handler=cmd_watch)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `orchestrator` command."""
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
