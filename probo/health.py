"""Liveness, readiness and metrics endpoints.

Ready means: Postgres answers and the engine has recovered. Redis is reported too, but
its absence does not make the process unready: trading never needs Redis (SPEC §7).
"""

from __future__ import annotations

import asyncio

import msgspec
from litestar import Response, get
from litestar.datastructures import State

from probo import metrics
from probo.db import UNAVAILABLE_ERRORS
from probo.errors import error_body
from probo.redis_store import REDIS_UNAVAILABLE_ERRORS

CHECK_TIMEOUT_S = 1.0


class Alive(msgspec.Struct):
    status: str = "ok"


class Readiness(msgspec.Struct):
    status: str
    postgres: bool
    redis: bool
    engine: bool


async def _postgres_ok(state: State) -> bool:
    try:
        await asyncio.wait_for(state.pool.fetchval("SELECT 1"), CHECK_TIMEOUT_S)
        return True
    except UNAVAILABLE_ERRORS:
        return False


async def _redis_ok(state: State) -> bool:
    try:
        return bool(await asyncio.wait_for(state.redis.ping(), CHECK_TIMEOUT_S))
    except (TimeoutError, *REDIS_UNAVAILABLE_ERRORS):
        return False


@get("/healthz", tags=["operations"], summary="The process is alive")
async def healthz() -> Alive:
    return Alive()


@get("/readyz", tags=["operations"], summary="Ready to serve: Postgres up and engine recovered")
async def readyz(state: State) -> Response:
    if not getattr(state, "started", False):
        return Response(error_body("unavailable", "starting"), status_code=503)
    postgres, redis = await asyncio.gather(_postgres_ok(state), _redis_ok(state))
    engine = state.engine.ready
    ready = postgres and engine
    readiness = Readiness(
        status="ready" if ready else "unavailable", postgres=postgres, redis=redis, engine=engine
    )
    if ready:
        return Response(readiness)
    body = error_body("unavailable", "not ready", {"checks": msgspec.to_builtins(readiness)})
    return Response(body, status_code=503)


@get("/metrics", tags=["operations"], summary="Prometheus metrics", include_in_schema=True)
async def metrics_endpoint() -> Response[bytes]:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


route_handlers = [healthz, readyz, metrics_endpoint]
