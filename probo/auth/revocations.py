"""Revoked session tokens: durable in Postgres, spread through Redis pub/sub, and
checked against an in-memory copy, so no request waits on either store.

Start-up loads every unexpired revocation from Postgres before the process is ready,
so a restart never forgets a logout, even with Redis away. A background listener
follows other processes' revocations through pub/sub and reloads from Postgres each
time it (re)connects; while Redis is away the last known revocations stand. The
listener subscribes through its own client (`subscriber`), so its connection is never
one a burst of logins waits for in the command pool, nor the other way round.

The SQL is in store.py; the Redis commands (publish, subscribe) stay here.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import asyncpg
import redis.asyncio as aioredis
from loguru import logger

from probo.auth import store
from probo.infra import REDIS_UNAVAILABLE_ERRORS, UNAVAILABLE_ERRORS, connection

RELOAD_ROWS_MAX = 10_000_000
RECONNECT_DELAY_MAX_S = 5.0
PURGE_INTERVAL_S = 60.0
RELOAD_INTERVAL_S = 30.0


class RevocationList:
    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        key_prefix: str,
        *,
        subscriber: aioredis.Redis,
    ) -> None:
        self._pool = pool
        self._redis = redis  # publishes, through the shared command pool
        self._subscriber = subscriber
        self._channel = key_prefix + "revocations"
        self._expiry_by_jti: dict[str, int] = {}
        self._last_purge = time.monotonic()

    def is_revoked(self, jti: str) -> bool:
        return jti in self._expiry_by_jti

    def _remember(self, jti: str, expires_at: int) -> None:
        if expires_at > time.time():
            self._expiry_by_jti[jti] = expires_at
        now = time.monotonic()
        if now - self._last_purge > PURGE_INTERVAL_S:
            self._last_purge = now
            wall = time.time()
            self._expiry_by_jti = {j: e for j, e in self._expiry_by_jti.items() if e > wall}

    async def revoke(self, jti: str, user_id: int, expires_at: int) -> None:
        """Revoke durably (Postgres), here at once, then tell other processes (best effort)."""
        async with connection(self._pool) as conn:
            await store.insert_revocation(
                conn, jti, user_id, datetime.fromtimestamp(expires_at, UTC)
            )
        self._remember(jti, expires_at)
        try:
            await self._redis.publish(self._channel, f"{jti}:{expires_at}")
        except REDIS_UNAVAILABLE_ERRORS as exc:
            # Other processes pick it up from Postgres when their listener reconnects.
            logger.warning("revocation not published ({})", type(exc).__name__)

    async def load(self) -> int:
        """Read every unexpired revocation from Postgres; returns how many."""
        async with connection(self._pool) as conn:
            await store.delete_expired_revocations(conn)
            rows = await store.revocations(conn, RELOAD_ROWS_MAX)
        for row in rows:
            self._remember(row["jti"], row["expires_at"])
        return len(rows)

    async def listen(self) -> None:
        """Follow revocations from other processes until cancelled.

        Pub/sub brings them at once; a reload from Postgres every RELOAD_INTERVAL_S
        catches any published while this process's Redis connection was down.
        """
        delay_s = 0.1
        while True:
            pubsub = self._subscriber.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                # Subscribe first, then reload: nothing published in between is missed.
                await self.load()
                reloaded_at = time.monotonic()
                delay_s = 0.1
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        jti, _, expires_at = message["data"].decode().rpartition(":")
                        if jti and expires_at.isdigit():
                            self._remember(jti, int(expires_at))
                    if time.monotonic() - reloaded_at > RELOAD_INTERVAL_S:
                        await self.load()
                        reloaded_at = time.monotonic()
            except asyncio.CancelledError:
                raise
            except (*REDIS_UNAVAILABLE_ERRORS, *UNAVAILABLE_ERRORS) as exc:
                logger.warning(
                    "revocation listener lost its stores ({}); retrying", type(exc).__name__
                )
            except Exception:
                # A bug must not end revocation updates for the process's life.
                logger.exception("revocation listener failed; retrying")
            finally:
                try:
                    await pubsub.aclose()
                except Exception:  # closing a broken connection may fail; nothing to keep
                    pass
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, RECONNECT_DELAY_MAX_S)
            try:
                await self.load()  # Redis may stay away; Postgres still has the truth
            except UNAVAILABLE_ERRORS:
                pass
