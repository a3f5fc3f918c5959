"""`orchestrator approvals`, `approve ID`, `reject ID --comment`: the approval inbox."""

from __future__ import annotations

import json

from .client import EXIT_OK, ApiClient


def _client(args) -> ApiClient:
    return ApiClient(args.api, args.token)


def _summary(approval: dict) -> str:
    figures = approval.get("figures") or {}
    if approval["kind"] == "budget":
        what = f"spent {figures.get('spent')} of {figures.get('limits')}"
    elif approval["kind"] == "gate":
        what = f"task {figures.get('key')}"
    else:
        what = f"{len(figures.get('tasks') or [])} tasks"
    return what


def cmd_list(args) -> int:
    """List approvals (pending ones unless --status says otherwise), oldest first."""
    params = {"page": args.page, "page_size": args.page_size}
    if args.status != "all":
        params["status"] = args.status
    path = f"/api/v1/sessions/{args.session}/approvals" if args.session else "/api/v1/approvals"
    page = _client(args).call("GET", path, params=params)
    if args.json:
        print(json.dumps(page, indent=2))
        return EXIT_OK
    for approval in page["items"]:
        print(f"{approval['id']}  {approval['kind']:<6} {approval['status']:<8} "
              f"{approval['requested_at'][:19]}  session {approval['session_id']}  "
              f"{_summary(approval)}")  # fmt: skip
    return EXIT_OK


def _decide(args, decision: str) -> int:
    body: dict = {"decision": decision}
    if args.comment:
        body["comment"] = args.comment
    limits = {"max_tokens": getattr(args, "max_tokens", None),
              "max_cost_usd": getattr(args, "max_cost_usd", None),
              "max_agent_seconds": getattr(args, "max_agent_seconds", None)}  # fmt: skip
    if any(value is not None for value in limits.values()):
        body["budget"] = {key: value for key, value in limits.items() if value is not None}
    approval = _client(args).call("POST", f"/api/v1/approvals/{args.approval_id}", json=body)
    print(f"{approval['id']} {approval['status']} by {approval['decided_by']}")
    return EXIT_OK


def cmd_approve(args) -> int:
    """Approve: run the gated task, start the planned session, or raise a spent budget."""
    return _decide(args, "approve")


def cmd_reject(args) -> int:
    """Reject: fail the gated task, or cancel the session."""
    return _decide(args, "reject")


def add_commands(commands) -> None:
    """Add the approval subcommands to the `orchestrator` parser."""
    listing = commands.add_parser("approvals", help="list approvals (the inbox)")
    listing.add_argument(
        "--status", default="pending", choices=["pending", "approved", "rejected", "expired", "all"]
    )
    listing.add_argument("--session", help="only this session's")
    listing.add_argument("--page", type=int, default=1)
    listing.add_argument("--page-size", type=int, default=20)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_list)

    approve = commands.add_parser("approve", help="approve an approval")
    approve.add_argument("approval_id")
    approve.add_argument("--comment")
    approve.add_argument("--max-tokens", type=int, help="a spent budget's raised limit")
    approve.add_argument("--max-cost-usd", type=float)
    approve.add_argument("--max-agent-seconds", type=float)
    approve.set_defaults(handler=cmd_approve)

    reject = commands.add_parser("reject", help="reject an approval")
    reject.add_argument("approval_id")
    reject.add_argument("--comment", required=True, help="why (a rejected gate's error)")
    reject.set_defaults(handler=cmd_reject)
