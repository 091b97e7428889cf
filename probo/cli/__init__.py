"""The `probo` command: serve, migrate, audit, simulate.

With no PROBO_DATABASE_URL / PROBO_REDIS_URL, each command first starts (or reuses)
the embedded Postgres and Redis under PROBO_DATA_DIR (default ./.probo); `serve` stops
them when it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import sys
from collections.abc import Callable
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

import msgspec
import uvicorn
from loguru import logger

from probo.infra import (
    DEV_JWT_SECRET,
    ConfigError,
    Settings,
    configure_logging,
    ensure_database,
    load_settings,
    prod_warnings,
    with_database,
)
from probo.web import ProboHttpProtocol

__all__ = ["SERVER_OPTIONS", "WEBSOCKET_OPTIONS", "main", "resolve_servers"]

EMBEDDED_DATABASE = "probo"

WS_PING_INTERVAL_S = 20.0
WS_CLIENT_FRAME_BYTES_MAX = 64 * 1024
# uvicorn's WebSocket settings, for `probo serve` and the test servers alike.
WEBSOCKET_OPTIONS: dict[str, Any] = {
    # The sans-I/O protocol: the feeds write ready-made frames to its transport.
    "ws": "websockets-sansio",
    # No permessage-deflate: a room's message is then the same bytes on every
    # connection, framed once; compressing per connection would cost a core at 1,000
    # subscribers (docs/DECISIONS.md).
    "ws_per_message_deflate": False,
    # Heartbeats (SPEC §10): a protocol ping every 20 s, and a peer that does not
    # answer within 20 s is dropped. Client frames are small ops.
    "ws_ping_interval": WS_PING_INTERVAL_S,
    "ws_ping_timeout": WS_PING_INTERVAL_S,
    "ws_max_size": WS_CLIENT_FRAME_BYTES_MAX,
}
# uvicorn's settings for `probo serve` and the test servers alike: the HTTP protocol
# that bounds request heads and answers its refusals in our error shape, and the above.
SERVER_OPTIONS: dict[str, Any] = {"http": ProboHttpProtocol, **WEBSOCKET_OPTIONS}


def resolve_servers(
    settings: Settings, stack: ExitStack, *, own_reused: bool, redis: bool = True
) -> Settings:
    """Settings with database and Redis URLs, starting embedded servers where none is set.

    Servers started here stop when `stack` closes; so do ones found already running
    when `own_reused` (serve takes over what a killed predecessor left behind).
    """
    from probo.infra import embedded

    updates: dict[str, str] = {}
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        postgres = embedded.start_postgres(settings.data_dir)
        if own_reused or not postgres.reused:
            stack.callback(postgres.stop)
        asyncio.run(ensure_database(postgres.url, EMBEDDED_DATABASE))
        updates["database_url"] = with_database(postgres.url, EMBEDDED_DATABASE)
        logger.info("embedded Postgres running under {}", settings.data_dir)
    if redis and settings.redis_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        redis_server = embedded.start_redis(settings.data_dir)
        if own_reused or not redis_server.reused:
            stack.callback(redis_server.stop)
        updates["redis_url"] = redis_server.url
        logger.info("embedded Redis running under {}", settings.data_dir)
    return msgspec.structs.replace(settings, **updates) if updates else settings


class _Stopped(Exception):
    """SIGTERM arrived; uvicorn has shut down gracefully and re-raised it to us."""


def _raise_stopped(signum: int, frame: object) -> None:
    raise _Stopped(signum)


def _dev_secret(settings: Settings) -> Settings:
    """In dev with no PROBO_JWT_SECRET: a random secret kept under the data dir, so
    sessions survive restarts and nobody can mint tokens with a published constant."""
    if settings.env != "dev" or settings.jwt_secret != DEV_JWT_SECRET:
        return settings
    path = settings.data_dir / "jwt-secret"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(32))
    return msgspec.structs.replace(settings, jwt_secret=path.read_text().strip())


def serve(settings: Settings) -> int:
    from probo.app import create_app

    for warning in prod_warnings(settings):
        logger.warning(warning)
    settings = _dev_secret(settings)

    # uvicorn re-raises the signal that stopped it once it has shut down; with a Python
    # handler in place that unwinds through the ExitStack, which stops embedded servers.
    signal.signal(signal.SIGTERM, _raise_stopped)
    with ExitStack() as stack, suppress(_Stopped, KeyboardInterrupt):
        settings = resolve_servers(settings, stack, own_reused=True)
        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            loop="uvloop",
            lifespan="on",
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=10,
            **SERVER_OPTIONS,
        )
    return 0


def migrate(settings: Settings) -> int:
    from probo.infra import migrate_url

    with ExitStack() as stack:
        settings = resolve_servers(settings, stack, own_reused=False, redis=False)
        asyncio.run(migrate_url(settings.database_url))
    print("schema applied")
    return 0


def audit(settings: Settings) -> int:
    from probo.ledger import audit_url

    with ExitStack() as stack:
        settings = resolve_servers(settings, stack, own_reused=False, redis=False)
        breaches = asyncio.run(audit_url(settings.database_url))
    if not breaches:
        print("ledger audit: all invariants hold")
        return 0
    for breach in breaches:
        print(f"BREACH {breach.invariant}: {breach.message}")
    return 1


def simulate(settings: Settings, args: argparse.Namespace) -> int:
    from probo.cli.simulate import Options
    from probo.cli.simulate import simulate as run

    options = Options(
        url=args.url or f"http://{settings.host}:{settings.port}",
        bots=args.bots,
        rate=args.rate,
        duration_s=args.duration,
        outbox=Path(args.outbox) if args.outbox else settings.sms_outbox,
        admin_phone=args.admin_phone or next(iter(sorted(settings.admin_phones)), None),
    )
    with suppress(KeyboardInterrupt):
        return asyncio.run(run(options))
    return 0


COMMANDS: dict[str, tuple[Callable[[Settings], int], str]] = {
    "serve": (serve, "serve the exchange over HTTP"),
    "migrate": (migrate, "apply schema.sql (idempotent)"),
    "audit": (audit, "check the ledger invariants; exit 1 naming any breach"),
    "simulate": (simulate, "bot traders against a running server (needs its outbox SMS provider)"),  # type: ignore[dict-item]
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="probo", description="Probo opinion-trading exchange")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text)
        if name in ("migrate", "audit"):
            command.add_argument("--database-url", help="overrides PROBO_DATABASE_URL")
        if name == "simulate":
            command.add_argument("--url", help="the server (default http://PROBO_HOST:PROBO_PORT)")
            command.add_argument("--bots", type=int, default=20, help="bot traders (default 20)")
            command.add_argument(
                "--rate", type=float, default=20.0, help="orders per second in all (default 20)"
            )
            command.add_argument(
                "--duration", type=float, default=0.0, help="seconds; 0 runs until Ctrl-C"
            )
            command.add_argument(
                "--outbox", help="the server's SMS outbox file (default PROBO_SMS_OUTBOX)"
            )
            command.add_argument("--admin-phone", help="creates a market if none is open")
    args = parser.parse_args(argv)
    overrides = {}
    if getattr(args, "database_url", None):
        overrides["database_url"] = args.database_url
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        print(f"probo: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    handler, _ = COMMANDS[args.command]
    if args.command == "simulate":
        return simulate(settings, args)
    return handler(settings)


if __name__ == "__main__":
    sys.exit(main())
