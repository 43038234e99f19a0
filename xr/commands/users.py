"""`python -m xr user add|passwd|disable|enable|role|list`: log-in users and their roles."""
from __future__ import annotations

import argparse
import sys

from xr.errors import UserError


def _password(args: argparse.Namespace) -> str:
    """From stdin (scripts) or typed twice at a prompt; never from the command line, where `ps` shows it."""
    import getpass

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise UserError("the passwords differ")
    return first


def cmd_user(args: argparse.Namespace) -> int:
    from xr import access
    from xr.config import settings

    s = settings()
    if args.user_command == "add":
        access.add_user(s, args.name, args.role, _password(args))
        print(f"added {args.name} ({args.role})", file=sys.stderr)
    elif args.user_command == "passwd":
        access.set_password(s, args.name, _password(args))
        print(f"changed the password of {args.name}", file=sys.stderr)
    elif args.user_command in ("disable", "enable"):
        access.set_disabled(s, args.name, args.user_command == "disable")
        print(f"{args.user_command}d {args.name}", file=sys.stderr)
    elif args.user_command == "role":
        access.set_role(s, args.name, args.role)
        print(f"{args.name} is now {args.role}", file=sys.stderr)
    else:
        for u in access.list_users(s):
            print(f"{u.name}\t{u.role}\t{u.created}" + ("\tdisabled" if u.disabled else ""))
    return 0


def register(sub) -> None:
    from xr.access import ROLES

    us = sub.add_parser("user", help="log-in users and their roles (the app asks for log-in beyond localhost)")
    uss = us.add_subparsers(dest="user_command", required=True)
    ua = uss.add_parser("add", help="add a user")
    ua.add_argument("name")
    # the values, not the members: argparse's "invalid choice" message lists the choices' repr
    ua.add_argument("--role", required=True, choices=[role.value for role in ROLES])
    up = uss.add_parser("passwd", help="set a user's password")
    up.add_argument("name")
    for sp in (ua, up):
        sp.add_argument("--password-stdin", action="store_true", help="read the password from stdin, one line")
        sp.set_defaults(fn=cmd_user)
    for command, what in (("disable", "end a user's access (log-in and live sessions); nothing is deleted"),
                          ("enable", "give a disabled user access again")):
        p = uss.add_parser(command, help=what)
        p.add_argument("name")
        p.set_defaults(fn=cmd_user)
    ur = uss.add_parser("role", help="change a user's role (takes effect at their next request)")
    ur.add_argument("name")
    ur.add_argument("role", choices=[role.value for role in ROLES])
    ur.set_defaults(fn=cmd_user)
    uss.add_parser("list", help="users and roles").set_defaults(fn=cmd_user)
