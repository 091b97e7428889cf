"""Revoked session tokens: kept in Redis until they expire, and mirrored in memory.

Requests check only the in-memory set, so Redis is never on the order path; a
background listener keeps the set current through pub/sub and reloads it whenever it
reconnects. While Redis is away the last known revocations stand.
"""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis
from loguru import logger

from probo.redis_store import REDIS_UNAVAILABLE_ERRORS

RELOAD_SCAN_COUNT = 1000
RELOAD_KEYS_MAX = 10_000_000
RECONNECT_DELAY_MAX_S = 5.0
PURGE_INTERVAL_S = 60.0


class RevocationList:
    def __init__(self, redis: aioredis.Redis, key_prefix: str) -> None:
        self._redis = redis
        self._key_prefix = key_prefix + "revoked:"
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

    async def revoke(self, jti: str, expires_at: int) -> None:
        """Revoke here at once, then in Redis for every process (raises if Redis is away)."""
        self._remember(jti, expires_at)
        ttl_s = max(1, expires_at - int(time.time()))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key_prefix + jti, expires_at, ex=ttl_s)
            pipe.publish(self._channel, f"{jti}:{expires_at}")
            await pipe.execute()

    async def reload(self) -> int:
        """Read every revocation in Redis into memory; returns how many were read."""
        count = 0
        async for key in self._redis.scan_iter(match=self._key_prefix + "*", count=RELOAD_SCAN_COUNT):
            raw = await self._redis.get(key)
            if raw is not None:
                jti = key.decode()[len(self._key_prefix) :]
                self._remember(jti, int(raw))
            count += 1
            if count >= RELOAD_KEYS_MAX:
                logger.error("revocation reload stopped at {} keys", RELOAD_KEYS_MAX)
                break
        return count

    async def listen(self) -> None:
        """Follow revocations from other processes until cancelled; reconnects forever."""
        delay_s = 0.1
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                # Subscribe first, then reload: nothing published in between is missed.
                await self.reload()
                delay_s = 0.1
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    jti, _, expires_at = message["data"].decode().rpartition(":")
                    if jti and expires_at.isdigit():
                        self._remember(jti, int(expires_at))
            except asyncio.CancelledError:
                raise
            except REDIS_UNAVAILABLE_ERRORS as exc:
                logger.warning("revocation listener lost Redis ({}); retrying", type(exc).__name__)
            finally:
                try:
                    await pubsub.aclose()
                except Exception:  # closing a broken connection may fail; nothing to keep
                    pass
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, RECONNECT_DELAY_MAX_S)
