"""Redis connections: a command pool that waits, bounded, and a subscriber's own connection.

Redis holds only short-lived things (OTPs, rate-limit counters, revoked tokens); every
key carries the configured prefix so several deployments or test runs can share one
server without seeing each other's keys.

A command waits, for at most REDIS_POOL_WAIT_S, for a free pooled connection: a burst
of logins larger than the pool queues for its turn instead of being refused (SPEC §15).
Only a pool that stays full that long is refused, and that is told apart from an
outage: it says "busy", counts in `probo_pool_exhausted_total`, and asks for a quick
retry, while an unreachable Redis fails at once (a refused connect) or within
REDIS_CONNECT_TIMEOUT_S / REDIS_SOCKET_TIMEOUT_S (a silent one) (SPEC §7).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection, BlockingConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError
from redis.exceptions import TimeoutError as RedisTimeoutError

from probo.infra import metrics

REDIS_SOCKET_TIMEOUT_S = 1.0
REDIS_CONNECT_TIMEOUT_S = 1.0
REDIS_HEALTH_CHECK_INTERVAL_S = 30
# Redis runs commands one at a time, so more connections add no throughput: 64 keep it
# busy while this process's single thread builds the next commands.
REDIS_CONNECTIONS_MAX = 64
# How long a command waits for one of them. A queue of 1,000 logins drains in about a
# second on a small machine; 5 s leaves room for a slower one, is the same patience the
# Postgres pool has (probo/infra/db.py), and is still well inside a client's request timeout.
REDIS_POOL_WAIT_S = 5.0
# The revocation listener's own connection (probo/auth/revocations.py): a burst that
# fills the command pool never holds back its reconnect, and it takes no slot there.
REDIS_SUBSCRIBER_CONNECTIONS_MAX = 1
# What a client is asked to wait after an outage refusal (a "busy" one waits less).
OUTAGE_RETRY_AFTER_S = 5

REDIS_UNAVAILABLE_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


class WaitingConnectionPool(BlockingConnectionPool):
    """redis-py's pool that waits for a free connection, with "no connection came free
    in time" raised as MaxConnectionsError: pool exhaustion, not a broken connection."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        try:
            return await super().get_connection(*args, **kwargs)
        except MaxConnectionsError:
            raise
        except (RedisConnectionError, TimeoutError) as error:
            # The wait for a free connection is the only step that ends in a builtin
            # TimeoutError: redis-py raises it as the cause of a ConnectionError (older
            # releases let it out as it is). A failed connect raises redis's own errors.
            if not isinstance(error, TimeoutError) and not isinstance(
                error.__cause__, TimeoutError
            ):
                raise
            metrics.POOL_EXHAUSTED.labels("redis").inc()
            raise MaxConnectionsError(
                f"all {self.max_connections} Redis connections stayed in use for {self.timeout} s"
            ) from error


def connect_redis(
    url: str,
    *,
    connections_max: int = REDIS_CONNECTIONS_MAX,
    pool_wait_s: float = REDIS_POOL_WAIT_S,
) -> aioredis.Redis:
    """A client whose commands wait up to `pool_wait_s` for one of `connections_max`."""
    pool = WaitingConnectionPool.from_url(
        url,
        max_connections=connections_max,
        timeout=pool_wait_s,
        socket_timeout=REDIS_SOCKET_TIMEOUT_S,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        health_check_interval=REDIS_HEALTH_CHECK_INTERVAL_S,
    )
    return aioredis.Redis.from_pool(pool)


def connect_redis_subscriber(url: str) -> aioredis.Redis:
    """A client for one long-lived pub/sub subscription, apart from the command pool."""
    return connect_redis(url, connections_max=REDIS_SUBSCRIBER_CONNECTIONS_MAX)
