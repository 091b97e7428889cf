"""Liveness, readiness, metrics, and the live audit of the ledger and the engine.

Ready means: Postgres answers, the engine has recovered, and the ledger writer is not
stuck retrying a batch. Redis is reported too, but its absence does not make the
process unready: trading never needs Redis (SPEC §7).
"""

from __future__ import annotations

import asyncio

import msgspec
from litestar import MediaType, Response, get
from litestar.datastructures import State

from probo.auth import Claims
from probo.infra import REDIS_UNAVAILABLE_ERRORS, UNAVAILABLE_ERRORS, connection, metrics, ping
from probo.ledger import Breach, EngineState, engine_breaches, ledger_breaches
from probo.services import Services, running_services, services_of
from probo.web import error_body, error_responses, unavailable

CHECK_TIMEOUT_S = 1.0
AUDIT_DRAIN_TIMEOUT_S = 10.0


class Alive(msgspec.Struct):
    status: str = "ok"


class Readiness(msgspec.Struct):
    status: str
    postgres: bool
    redis: bool
    engine: bool
    ledger: bool  # the ledger writer is committing (not stuck retrying a batch)


async def _postgres_ok(services: Services) -> bool:
    try:
        await asyncio.wait_for(ping(services.pool), CHECK_TIMEOUT_S)
        return True
    except UNAVAILABLE_ERRORS:
        return False


async def _redis_ok(services: Services) -> bool:
    try:
        return bool(await asyncio.wait_for(services.redis.ping(), CHECK_TIMEOUT_S))
    except (TimeoutError, *REDIS_UNAVAILABLE_ERRORS):
        return False


@get("/healthz", tags=["operations"], summary="The process is alive")
async def healthz() -> Alive:
    return Alive()


@get(
    "/readyz",
    tags=["operations"],
    summary="Ready to serve: Postgres up, engine recovered, ledger writer committing",
    responses=error_responses(503),
)
async def readyz(state: State) -> Response[Readiness]:
    services = running_services(state)
    if services is None:
        return Response(error_body("unavailable", "starting or stopping"), status_code=503)
    postgres, redis = await asyncio.gather(_postgres_ok(services), _redis_ok(services))
    engine = services.engine.ready
    ledger = services.writer.stalled_since is None
    ready = postgres and engine and ledger
    readiness = Readiness(
        status="ready" if ready else "unavailable",
        postgres=postgres,
        redis=redis,
        engine=engine,
        ledger=ledger,
    )
    if ready:
        return Response(readiness)
    body = error_body("unavailable", "not ready", {"checks": msgspec.to_builtins(readiness)})
    return Response(body, status_code=503)


@get(
    "/metrics",
    tags=["operations"],
    summary="Prometheus metrics",
    media_type=MediaType.TEXT,
    include_in_schema=True,
)
async def metrics_endpoint() -> Response[bytes]:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


class AuditReport(msgspec.Struct):
    ok: bool
    breaches: list[Breach]


@get(
    "/api/v1/admin/audit",
    tags=["admin"],
    summary="SPEC §3 invariants 1-5 against the live engine",
    description="Meaningful when trading is idle: the engine's state is taken, the ledger writer drained, "
    "then Postgres read and compared.",
    responses=error_responses(401, 403, 503),
)
async def live_audit(admin: Claims, state: State) -> AuditReport:
    services = services_of(state)
    cash, positions, escrow, open_orders = services.engine.state()
    if not await services.writer.drain(AUDIT_DRAIN_TIMEOUT_S):
        raise unavailable("the ledger writer did not drain", 1)
    engine = EngineState(cash=cash, positions=positions, escrow=escrow, open_orders=open_orders)
    async with connection(services.pool) as conn:
        breaches = await ledger_breaches(conn) + await engine_breaches(conn, engine)
    return AuditReport(ok=not breaches, breaches=breaches)


route_handlers = [healthz, readyz, metrics_endpoint, live_audit]
