"""Redis connection and the guard that turns "Redis is away" into a 503.

Redis holds only short-lived things (OTPs, rate-limit counters, revoked tokens); every
key carries the configured prefix so several deployments or test runs can share one
server without seeing each other's keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from probo.errors import unavailable

REDIS_SOCKET_TIMEOUT_S = 1.0
REDIS_CONNECT_TIMEOUT_S = 1.0
REDIS_CONNECTIONS_MAX = 64

REDIS_UNAVAILABLE_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


def connect_redis(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url,
        socket_timeout=REDIS_SOCKET_TIMEOUT_S,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        max_connections=REDIS_CONNECTIONS_MAX,
        decode_responses=False,
        health_check_interval=30,
    )


@contextmanager
def redis_required(what: str) -> Iterator[None]:
    """Run a block that cannot work without Redis; its absence answers 503."""
    try:
        yield
    except REDIS_UNAVAILABLE_ERRORS:
        raise unavailable(f"{what} is temporarily unavailable", retry_after_s=5) from None
