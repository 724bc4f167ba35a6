"""The administration commands of the CLI: ``berth tenant|user|member|robot ...``.

They work on the configured database directly, without a running server, acting as a local site
admin: whoever can open the database could change it anyway. Every command prints a short text
for people, or one JSON document on standard output with ``--json``; errors go to standard error
and the exit code says what went wrong (see EXIT_CODES_HELP).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import getpass
import json
import re
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import yaml

from registry.settings import Settings

# The database, password and policy layers are imported when a command runs, not here:
# `berth --help`, `berth migrate` and the server's start need none of them from this module.
if TYPE_CHECKING:
    from registry.admin.operations import Admin, RobotCredentials, RobotInfo

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_FORBIDDEN = 5

ROLES = ("reader", "writer", "admin")  # auth.policy.ROLE_ACTIONS validates them

EXIT_CODES_HELP = """\
exit codes:
  0  success
  1  error (database unreachable or not migrated, key files unreadable, ...)
  2  invalid usage, argument or configuration (bad name, role, access, expiry, password)
  3  not found (tenant, user, membership or robot)
  4  conflict (already exists)
  5  forbidden (the local CLI acts as a site admin; kept for parity with /api/v1)

With --json, the result is one JSON document on standard output; messages and errors go to
standard error."""

COMMANDS = ("tenant", "user", "member", "robot")

# Kubernetes object names (DNS-1123 subdomain) and namespaces (DNS-1123 label).
_K8S_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_K8S_NAMESPACE_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class UsageError(Exception):
    """A bad argument the CLI itself detects (exit code 2)."""


@dataclass(frozen=True)
class Output:
    """A command's result: ``data`` for --json, ``text`` for people (and ``note`` on stderr)."""

    data: Any
    text: str
    note: str = ""


Handler = Callable[["Admin", argparse.Namespace, Settings], Awaitable[Output]]


def _json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _json(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, list):
        return [_json(v) for v in value]
    return value


def _table(headers: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "(none)"
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _read_password(args: argparse.Namespace) -> tuple[str, bool]:
    """The password from stdin (--password-stdin), or a generated one; and whether generated."""
    if not args.password_stdin:
        from registry.auth.passwords import generate_secret

        return generate_secret(24), True
    if sys.stdin.isatty():
        return getpass.getpass("Password: "), False
    line = sys.stdin.readline()
    return line.removesuffix("\n").removesuffix("\r"), False


def _robot_ref(ref: str) -> tuple[str, str]:
    """``tenant/name`` (or the robot's username ``tenant+name``) to (tenant, name)."""
    sep = "/" if "/" in ref else "+"
    tenant, found, name = ref.partition(sep)
    if not found or not tenant or not name or "/" in name:
        raise UsageError(f"expected TENANT/NAME, got {ref[:100]!r}")
    return tenant, name


def registry_host(settings: Settings) -> str:
    """host[:port] of the registry's external URL: the key docker's config.json uses."""
    parts = urlsplit(settings.external_url)
    return parts.netloc.rpartition("@")[2] or parts.path


def k8s_secret(
    settings: Settings, credentials: RobotCredentials, name: str, namespace: str | None
) -> dict[str, Any]:
    """A ``kubernetes.io/dockerconfigjson`` Secret holding the robot's credentials."""
    username, password = credentials.username, credentials.secret
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    config = {
        "auths": {
            registry_host(settings): {"username": username, "password": password, "auth": auth}
        }
    }
    metadata: dict[str, str] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
    }


def _check_k8s_options(args: argparse.Namespace) -> None:
    if args.k8s_secret is None:
        if args.namespace is not None:
            raise UsageError("--namespace needs --k8s-secret")
        return
    if len(args.k8s_secret) > 253 or not _K8S_NAME_RE.fullmatch(args.k8s_secret):
        raise UsageError(f"invalid Kubernetes Secret name {args.k8s_secret[:100]!r}")
    if args.namespace is not None and (
        len(args.namespace) > 63 or not _K8S_NAMESPACE_RE.fullmatch(args.namespace)
    ):
        raise UsageError(f"invalid Kubernetes namespace {args.namespace[:100]!r}")


def _robot_text(robot: RobotInfo) -> str:
    state = "disabled" if robot.disabled else "expired" if robot.expired else "active"
    expiry = f", expires {robot.expires_at}" if robot.expires_at else ""
    return f"robot {robot.username} ({','.join(robot.actions)}{expiry}; {state})"


def _credentials_output(
    args: argparse.Namespace, settings: Settings, credentials: RobotCredentials, verb: str
) -> Output:
    robot = credentials.robot
    if args.k8s_secret is not None:
        secret = k8s_secret(settings, credentials, args.k8s_secret, args.namespace)
        return Output(
            secret,
            yaml.safe_dump(secret, sort_keys=False).rstrip("\n"),
            note=f"{verb} {_robot_text(robot)}; its secret is only in this Secret",
        )
    data = {"robot": _json(robot), "username": robot.username, "secret": credentials.secret}
    text = (
        f"{verb} {_robot_text(robot)}\nusername: {robot.username}\nsecret:   {credentials.secret}"
    )
    return Output(data, text, note="the secret is shown once: store it now")


# --- handlers


async def tenant_create(admin: Admin, args: argparse.Namespace, settings: Settings) -> Output:
    tenant = await admin.create_tenant(args.name, public=args.public)
    kind = "public" if tenant.public else "private"
    return Output(_json(tenant), f"created {kind} tenant {tenant.name}")


async def tenant_list(admin: Admin, args: argparse.Namespace, settings: Settings) -> Output:
    tenants = await admin.list_tenants()
    rows = [[t.name, "public" if t.public else "private"] for t in tenants]
    return Output(_json(tenants), _table(["TENANT", "VISIBILITY"], rows))


async def tenant_set_public(admin: Admin, args: argparse.Namespace, settings: Settings) -> Output:
    tenant = await admin.set_tenant_public(args.name, not args.off)
    kind = "public" if tenant.public else "private"
    return Output(_json(tenant), f"tenant {tenant.name} is now {kind}")


async def tenant_remove(admin: Admin, args: argparse.Namespace, settings: Settings) -> Output:
    await admin.delete_tenant(args.name)
    return Output(
        {"tenant": args.name, "deleted": True},
        f"deleted tenant {args.name} with its memberships and robots",
    )


async def user_create(admin: Admin, args: argparse.Namespace, settings: Settings) -> Output:
    password, generated = _read_password(args)
    user = await admin.create_user(args.name, password, is_admin=args.admin)
    data = _json(user)
    text = f"created {'site admin' if user.is_admin else 'user'} {user.name}"
    if generated:
        data["password"] = password
        text += f"\npassword: {password}"
        return Output(data, text, note="the password is shown once: store it now")
    return Output(data, text)


def _user_row(user: Any) -> list[str]:
    tenants = ",".join(f"{t}:{r}" for t, r in sorted(user.tenants.items())) or "-"
    flags = [f for f, on in (("admin", user.is_admin), ("disabled", user.disabled)) if on]
    return [user.name, ",".join(flags) or "-", tenants]


async def user_list(admin: Admin, args: argparse.Namespace, settings: Settings) -> Output:
    users = await admin.list_users()
    return Output(_json(users), _table(["USER", "FLAGS", "TENANTS"], [_user_row(u) for u in users]))


async def user_remove(admin: Admin, args: argparse.Namespace, settings: Settings) -> Output:
    await admin.delete_user(args.name)
    return Output({"user": args.name, "deleted": True}, f"deleted user {args.name}")


async def user_set_password(admin: Admin, args: argparse.Namespace, settings: Settings) -> Output:
    password, generated = _read_password(args)
    user = await admin.update_user(args.name, password=password)
    data = _json(user)
    text = f"changed the password of {user.name} (its refresh tokens are revoked)"
    if generated:
        data["password"] = password
        text += f"\npassword: {password}"
        return Output(data, text, note="the password is shown once: store it now")
    return Output(data, text)


async def user_set_admin(admin: Admin, args: argparse.Namespace, settings: Settings) -> Output:
    user = await admin.update_user(args.name, is_admin=not args.off)
    state = "is now a site admin" if user.is_admin else "is no longer a site admin"
    return Output(_json(user), f"{user.name} {state}")


async def user_disable(admin: Admin, args: argparse.Namespace, settings: Settings) -> Output:
    user = await admin.update_user(args.name, disabled=True)
    return Output(_json(user), f"disabled {user.name} (its refresh tokens are revoked)")


async def user_enable(admin: Admin, args: argparse.Namespace, settings: Settings) -> Output:
    user = await admin.update_user(args.name, disabled=False)
    return Output(_json(user), f"enabled {user.name}")


async def member_add(admin: Admin, args: argparse.Namespace, settings: Settings) -> Output:
    member = await admin.set_member(args.tenant, args.user, args.role)
    return Output(_json(member), f"{member.user} is {member.role} of {member.tenant}")


async def member_list(admin: Admin, args: argparse.Namespace, settings: Settings) -> Output:
    members = await admin.list_members(args.tenant)
    rows = [[m.user, m.role] for m in members]
    return Output(_json(members), _table(["USER", "ROLE"], rows))


async def member_remove(admin: Admin, args: argparse.Namespace, settings: Settings) -> Output:
    await admin.remove_member(args.tenant, args.user)
    return Output(
        {"tenant": args.tenant, "user": args.user, "deleted": True},
        f"removed {args.user} from {args.tenant}",
    )


async def robot_create(admin: Admin, args: argparse.Namespace, settings: Settings) -> Output:
    from registry.admin.operations import parse_expiry

    tenant, name = _robot_ref(args.robot)
    _check_k8s_options(args)
    expires_at = parse_expiry(args.expires_in) if args.expires_in else None
    credentials = await admin.create_robot(tenant, name, args.access, expires_at=expires_at)
    return _credentials_output(args, settings, credentials, "created")


async def robot_list(admin: Admin, args: argparse.Namespace, settings: Settings) -> Output:
    robots = await admin.list_robots(args.tenant)
    rows = [
        [
            r.username,
            ",".join(r.actions),
            r.expires_at or "never",
            "disabled" if r.disabled else "expired" if r.expired else "active",
        ]
        for r in robots
    ]
    return Output(_json(robots), _table(["ROBOT", "ACCESS", "EXPIRES", "STATE"], rows))


async def robot_remove(admin: Admin, args: argparse.Namespace, settings: Settings) -> Output:
    tenant, name = _robot_ref(args.robot)
    await admin.delete_robot(tenant, name)
    username = f"{tenant}+{name}"
    return Output(
        {"tenant": tenant, "name": name, "username": username, "deleted": True},
        f"deleted robot {username}",
    )


async def robot_disable(admin: Admin, args: argparse.Namespace, settings: Settings) -> Output:
    tenant, name = _robot_ref(args.robot)
    robot = await admin.set_robot_disabled(tenant, name, True)
    return Output(_json(robot), f"disabled {_robot_text(robot)}")


async def robot_enable(admin: Admin, args: argparse.Namespace, settings: Settings) -> Output:
    tenant, name = _robot_ref(args.robot)
    robot = await admin.set_robot_disabled(tenant, name, False)
    return Output(_json(robot), f"enabled {_robot_text(robot)}")


async def robot_rotate(admin: Admin, args: argparse.Namespace, settings: Settings) -> Output:
    tenant, name = _robot_ref(args.robot)
    _check_k8s_options(args)
    credentials = await admin.rotate_robot_secret(tenant, name)
    return _credentials_output(args, settings, credentials, "new secret for")


# --- the parser


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    settings_options: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add ``tenant``, ``user``, ``member`` and ``robot`` to the CLI's subcommands."""

    def group(name: str, help: str) -> argparse._SubParsersAction[argparse.ArgumentParser]:
        parser = commands.add_parser(
            name,
            help=help,
            description=f"{help[0].upper()}{help[1:]}, in the local database (no server needed).",
            epilog=EXIT_CODES_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
        return sub

    def action(
        sub: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        handler: Handler,
        help: str,
        aliases: tuple[str, ...] = (),
        pepper: bool = False,
    ) -> argparse.ArgumentParser:
        parser = sub.add_parser(
            name,
            aliases=list(aliases),
            help=help,
            description=help[0].upper() + help[1:] + ".",
            epilog=EXIT_CODES_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        settings_options(parser)
        parser.add_argument("--json", action="store_true", help="print the result as JSON")
        parser.set_defaults(handler=handler, needs_pepper=pepper)
        return parser

    tenant = group("tenant", "manage tenants (the first path component of repositories)")
    p = action(tenant, "create", tenant_create, "create a tenant")
    p.add_argument("name", help="tenant name, e.g. acme")
    p.add_argument("--public", action="store_true", help="anyone may pull, anonymously too")
    action(tenant, "list", tenant_list, "list tenants", aliases=("ls",))
    p = action(tenant, "set-public", tenant_set_public, "make a tenant public (or private)")
    p.add_argument("name")
    p.add_argument("--off", action="store_true", help="make the tenant private again")
    p = action(
        tenant,
        "remove",
        tenant_remove,
        "delete a tenant with its memberships and robots (repositories stay in storage)",
        aliases=("rm", "delete"),
    )
    p.add_argument("name")

    user = group("user", "manage user accounts")
    p = action(user, "create", user_create, "create a user")
    p.add_argument("name", help="user name: a-z, 0-9, '.', '_', '-' (up to 64)")
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (default: generate and print one)",
    )
    p.add_argument("--admin", action="store_true", help="make the user a site admin")
    action(user, "list", user_list, "list users with their tenants", aliases=("ls",))
    p = action(user, "remove", user_remove, "delete a user", aliases=("rm", "delete"))
    p.add_argument("name")
    p = action(user, "set-password", user_set_password, "change a user's password")
    p.add_argument("name")
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (default: generate and print one)",
    )
    p = action(user, "set-admin", user_set_admin, "make a user a site admin (or not)")
    p.add_argument("name")
    p.add_argument("--off", action="store_true", help="remove site admin rights")
    p = action(user, "disable", user_disable, "disable a user and revoke its refresh tokens")
    p.add_argument("name")
    p = action(user, "enable", user_enable, "enable a disabled user")
    p.add_argument("name")

    member = group("member", "manage tenant memberships")
    p = action(member, "add", member_add, "add a user to a tenant, or change its role")
    p.add_argument("tenant")
    p.add_argument("user")
    p.add_argument(
        "--role",
        default="reader",
        metavar="{" + ",".join(ROLES) + "}",
        help="reader pulls, writer also pushes, admin also deletes and manages members and "
        "robots (default: reader)",
    )
    p = action(member, "list", member_list, "list a tenant's members", aliases=("ls",))
    p.add_argument("tenant")
    p = action(
        member, "remove", member_remove, "remove a user from a tenant", aliases=("rm", "delete")
    )
    p.add_argument("tenant")
    p.add_argument("user")

    robot = group("robot", "manage robot accounts (log in as <tenant>+<name>)")
    p = action(
        robot, "create", robot_create, "create a robot and print its secret once", pepper=True
    )
    p.add_argument("robot", metavar="TENANT/NAME", help="e.g. acme/ci")
    p.add_argument(
        "--access", required=True, help="pull, or pull,push (on the tenant's repositories)"
    )
    p.add_argument(
        "--expires-in",
        metavar="WHEN",
        help="a duration (30d, 12h, 90m, 2w) or an ISO date (2030-01-31); default: never",
    )
    _k8s_options(p)
    p = action(robot, "list", robot_list, "list robots", aliases=("ls",))
    p.add_argument("tenant", nargs="?", help="only this tenant's robots (default: all)")
    p = action(robot, "remove", robot_remove, "delete a robot", aliases=("rm", "delete"))
    p.add_argument("robot", metavar="TENANT/NAME")
    p = action(robot, "disable", robot_disable, "disable a robot and revoke its refresh tokens")
    p.add_argument("robot", metavar="TENANT/NAME")
    p = action(robot, "enable", robot_enable, "enable a disabled robot")
    p.add_argument("robot", metavar="TENANT/NAME")
    p = action(
        robot,
        "rotate-secret",
        robot_rotate,
        "give a robot a new secret, printed once (the old one stops working)",
        pepper=True,
    )
    p.add_argument("robot", metavar="TENANT/NAME")
    _k8s_options(p)


def _k8s_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--k8s-secret",
        metavar="NAME",
        help="print a kubernetes.io/dockerconfigjson Secret of this name (YAML, or JSON with "
        "--json) instead of the secret",
    )
    parser.add_argument("--namespace", metavar="NS", help="the Secret's namespace")


# --- running


def _prepare_database(settings: Settings) -> None:
    """A fresh data directory gets its embedded SQLite database, so the first command works."""
    if settings.database.url:
        return
    if not (settings.data_path / "berth.db").exists():
        from registry.db.migrate import upgrade

        upgrade(settings.database_url)


def _pepper(settings: Settings) -> bytes:
    from registry.auth.keys import load_keys

    auth = settings.auth
    return load_keys(
        settings.keys_path, auth.algorithm, auth.signing_key, auth.verification_keys
    ).pepper


async def _execute(args: argparse.Namespace, settings: Settings, pepper: bytes | None) -> Output:
    from registry.admin.operations import LOCAL_ADMIN, Admin
    from registry.db.session import Database

    db = Database(settings.database_url)
    try:
        admin = Admin(db, LOCAL_ADMIN, pepper=pepper, client="local")
        handler: Handler = args.handler
        return await handler(admin, args, settings)
    finally:
        await db.dispose()


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run one administration command; the exit code says how it went."""
    from sqlalchemy.exc import SQLAlchemyError

    from registry.admin.operations import AdminError, Conflict, Forbidden, Invalid, NotFound
    from registry.auth import audit

    exit_codes: dict[type[Exception], int] = {
        UsageError: EXIT_USAGE,
        Invalid: EXIT_USAGE,
        NotFound: EXIT_NOT_FOUND,
        Conflict: EXIT_CONFLICT,
        Forbidden: EXIT_FORBIDDEN,
    }
    try:
        _prepare_database(settings)
        audit.configure(settings.auth.audit_log or str(settings.data_path / "audit.log"))
        pepper = _pepper(settings) if args.needs_pepper else None
        output = asyncio.run(_execute(args, settings, pepper))
    except (AdminError, UsageError) as exc:
        print(f"berth: {exc}", file=sys.stderr)
        return exit_codes.get(type(exc), EXIT_ERROR)
    except SQLAlchemyError as exc:
        print(
            f"berth: database error: {exc.__class__.__name__}: {str(exc).splitlines()[0]}\n"
            "(is the database reachable and migrated? `berth migrate` applies migrations)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    except OSError as exc:
        print(f"berth: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(output.data, indent=2))
    else:
        print(output.text)
    if output.note:
        print(f"berth: {output.note}", file=sys.stderr)
    if settings.auth.mode != "token" and args.handler in (user_create, robot_create):
        print(
            "berth: note: auth.mode is 'none', so accounts take effect only once it is 'token'",
            file=sys.stderr,
        )
    return EXIT_OK
