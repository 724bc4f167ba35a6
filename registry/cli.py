"""The `berth` command line: serve, migrate, and administration (tenant, user, member, robot)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from registry import __version__
from registry.admin import commands as admin_commands
from registry.settings import Settings, SettingsError, load_settings

# Worker processes rebuild the exact settings the parent resolved from file, env and flags.
SETTINGS_ENV = "_BERTH_RESOLVED_SETTINGS"
APP = "registry.cli:app_from_environment"


def _settings_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="FILE", help="YAML configuration file (default: embedded defaults)"
    )
    parser.add_argument(
        "--data-dir", metavar="DIR", help="directory for the SQLite database and blob storage"
    )


def _load(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> Settings:
    overrides: dict[str, Any] = dict(extra or {})
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    return load_settings(args.config, overrides=overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="berth",
        description=(
            "Berth, a private OCI container registry.\n\n"
            "Configuration comes from embedded defaults, then --config FILE, then BERTH_*\n"
            "environment variables (BERTH_SECTION__KEY=value), then the flags of each command."
        ),
        epilog=admin_commands.EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"berth {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="run the registry", description="Run the registry HTTP server."
    )
    _settings_options(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 5000)")
    serve.add_argument("--workers", type=int, help="worker processes (0: one per CPU core)")

    migrate = commands.add_parser(
        "migrate",
        help="create or upgrade the database schema",
        description="Apply Alembic migrations to the configured database (to 'head' by default).",
    )
    _settings_options(migrate)
    migrate.add_argument("--revision", default="head", help="target revision (default: head)")
    admin_commands.add_commands(commands, _settings_options)
    return parser


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from registry.server import BerthHttpProtocol, serve_workers

    server: dict[str, Any] = {}
    if args.host:
        server["host"] = args.host
    if args.port is not None:
        server["port"] = args.port
    if args.workers is not None:
        server["workers"] = args.workers
    settings = _load(args, {"server": server} if server else None)
    _configure_logging(settings)
    workers = settings.server.workers or os.cpu_count() or 1
    if workers > 1:
        # Migrations and the first-start bootstrap import much (Alembic, argon2) that the
        # supervisor of several workers never needs again: do them in a short-lived process.
        import multiprocessing

        prepare = multiprocessing.get_context("spawn").Process(
            target=_prepare, args=(settings.model_dump_json(),)
        )
        prepare.start()
        prepare.join()
        if prepare.exitcode != 0:
            return 1
        # Fewer malloc arenas: blob blocks allocated in worker threads otherwise leave
        # each thread's arena holding memory (inherited by the spawned workers).
        os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    else:
        _prepare(settings.model_dump_json())
    os.environ[SETTINGS_ENV] = settings.model_dump_json()
    logging.getLogger("registry").info(
        "Berth %s listening on http://%s:%d (data in %s)",
        __version__,
        settings.server.host,
        settings.server.port,
        settings.data_path,
    )
    options: dict[str, Any] = {
        "factory": True,
        "host": settings.server.host,
        "port": settings.server.port,
        "loop": "uvloop",
        "http": BerthHttpProtocol,
        "log_level": settings.server.log_level,
        "access_log": settings.server.access_log,
        "timeout_keep_alive": 30,
        "server_header": False,
    }
    if workers > 1:
        return serve_workers(uvicorn.Config(APP, workers=workers, **options))
    uvicorn.run(APP, **options)
    return 0


def _prepare(settings_json: str) -> None:
    """Before any worker starts: migrate (once: workers racing to migrate would collide),
    create the storage root, and on first start the signing keys and the site admin."""
    from registry.db.migrate import upgrade

    settings = Settings.model_validate(json.loads(settings_json))
    _configure_logging(settings)
    if settings.database.migrate_on_start:
        upgrade(settings.database_url)
    settings.storage_root.mkdir(parents=True, exist_ok=True)
    if settings.auth.mode == "token":
        import asyncio

        from registry.admin.bootstrap import bootstrap

        asyncio.run(bootstrap(settings))


def app_from_environment() -> Any:
    """The ASGI app for uvicorn (also in each worker process), from the parent's settings."""
    from registry.app import create_app

    raw = os.environ.get(SETTINGS_ENV)
    settings = Settings.model_validate(json.loads(raw)) if raw else load_settings()
    _configure_logging(settings)
    return create_app(settings)


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.server.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _migrate(args: argparse.Namespace) -> int:
    from registry.db.migrate import upgrade

    settings = _load(args)
    upgrade(settings.database_url, args.revision)
    print(f"database at revision {args.revision}: {settings.database_url}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "migrate":
            return _migrate(args)
        if args.command in admin_commands.COMMANDS:
            return admin_commands.run(args, _load(args))
    except SettingsError as exc:
        print(f"berth: {exc}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {args.command}")
    return 2
