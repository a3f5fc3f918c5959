"""`orchestrator tokens …`: create, list and revoke API tokens directly in the database, so the
first admin token can exist before anyone can call the API (needs DATABASE_URL)."""

from __future__ import annotations

import os
import sys

from app.services import tokens

from .client import EXIT_OK, in_database


def cmd_create(args) -> int:
    """Create a token and print its secret (shown this once)."""
    token, secret = in_database(
        os.environ.get("DATABASE_URL"), lambda s: tokens.create_token(s, args.name, args.scope)
    )
    print(secret)
    print(f"token {token.id} ({token.name}, scopes {' '.join(token.scopes)}); the secret above "
          "is shown only now", file=sys.stderr)  # fmt: skip
    return EXIT_OK


def cmd_list(args) -> int:
    """List tokens: id, prefix, name, scopes, last use, revocation."""
    listed = in_database(os.environ.get("DATABASE_URL"),
                         lambda s: tokens.list_tokens(s, include_revoked=args.all))  # fmt: skip
    for token in listed:
        used = token.last_used_at.isoformat()[:19] if token.last_used_at else "never"
        revoked = f"  revoked {token.revoked_at.isoformat()[:19]}" if token.revoked_at else ""
        print(f"{token.id}  {token.prefix}…  {token.name:<20} {','.join(token.scopes):<16} "
              f"used {used}{revoked}")  # fmt: skip
    return EXIT_OK


def cmd_revoke(args) -> int:
    """Revoke a token by id (or unique prefix)."""
    token = in_database(os.environ.get("DATABASE_URL"), lambda s: tokens.revoke_token(s, args.id))
    print(f"{token.id} revoked")
    return EXIT_OK


def add_commands(commands) -> None:
    """Add `tokens create|list|revoke` to the CLI's subcommands."""
    parser = commands.add_parser("tokens", help="create, list or revoke API tokens (DATABASE_URL)")
    sub = parser.add_subparsers(dest="tokens_command", required=True)
    create = sub.add_parser("create", help="create a token and print its secret once")
    create.add_argument("name")
    create.add_argument("--scope", action="append", choices=tokens.SCOPES, required=True,
                        help="read, write or admin; repeat for several")  # fmt: skip
    create.set_defaults(handler=cmd_create)
    listing = sub.add_parser("list", help="list tokens (never their secrets)")
    listing.add_argument("--all", action="store_true", help="include revoked tokens")
    listing.set_defaults(handler=cmd_list)
    revoke = sub.add_parser("revoke", help="revoke a token by id or prefix")
    revoke.add_argument("id")
    revoke.set_defaults(handler=cmd_revoke)
