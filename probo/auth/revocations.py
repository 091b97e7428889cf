"""Revoked session tokens and suspended users: durable in Postgres, spread through Redis
pub/sub, and checked against an in-memory copy, so no request waits on either store.

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
import uuid

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
        self._suspensions_channel = key_prefix + "suspensions"
        self._expiry_by_jti: dict[str, int] = {}
        self._last_purge = time.monotonic()
        self._suspended: set[int] = set()
        # Names this process in its suspension messages: its own, echoed back by Redis,
        # could otherwise land after a later local change and undo it for a moment.
        self._origin = uuid.uuid4().hex
        # Suspensions changed while a load reads Postgres: replayed over what it read,
        # since the read may predate them (a load only ever adds revocations, so they
        # need no such care).
        self._loads_running = 0
        self._changes_during_load: list[tuple[int, bool]] = []

    def is_revoked(self, jti: str) -> bool:
        return jti in self._expiry_by_jti

    def is_suspended(self, user_id: int) -> bool:
        return user_id in self._suspended

    def _apply_suspension(self, user_id: int, suspended: bool) -> None:
        if suspended:
            self._suspended.add(user_id)
        else:
            self._suspended.discard(user_id)
        if self._loads_running:
            self._changes_during_load.append((user_id, suspended))

    async def announce_suspension(self, user_id: int, suspended: bool) -> None:
        """A suspension (or its end) committed in Postgres: here at once, then to other
        processes (best effort; they reload from Postgres every RELOAD_INTERVAL_S)."""
        self._apply_suspension(user_id, suspended)
        try:
            await self._redis.publish(
                self._suspensions_channel, f"{user_id}:{int(suspended)}:{self._origin}"
            )
        except REDIS_UNAVAILABLE_ERRORS as exc:
            logger.warning("suspension not published ({})", type(exc).__name__)

    def _remember(self, jti: str, expires_at: int) -> None:
        if expires_at > time.time():
            self._expiry_by_jti[jti] = expires_at
        now = time.monotonic()
        if now - self._last_purge > PURGE_INTERVAL_S:
            self._last_purge = now
            wall = time.time()
            self._expiry_by_jti = {j: e for j, e in self._expiry_by_jti.items() if e > wall}

    async def announce(self, jti: str, expires_at: int) -> None:
        """A revocation committed in Postgres (by the caller's transaction): here at
        once, then to other processes (best effort)."""
        self._remember(jti, expires_at)
        try:
            await self._redis.publish(self._channel, f"{jti}:{expires_at}")
        except REDIS_UNAVAILABLE_ERRORS as exc:
            # Other processes pick it up from Postgres when their listener reconnects.
            logger.warning("revocation not published ({})", type(exc).__name__)

    async def load(self) -> int:
        """Read every unexpired revocation, and the suspended users, from Postgres;
        returns how many revocations."""
        self._loads_running += 1
        mark = len(self._changes_during_load)
        try:
            async with connection(self._pool) as conn:
                await store.delete_expired_revocations(conn)
                rows = await store.revocations(conn, RELOAD_ROWS_MAX)
                suspended = set(await store.suspended_users(conn))
            for user_id, is_suspended in self._changes_during_load[mark:]:
                if is_suspended:
                    suspended.add(user_id)
                else:
                    suspended.discard(user_id)
            self._suspended = suspended
        finally:
            self._loads_running -= 1
            if not self._loads_running:
                self._changes_during_load.clear()
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
                await pubsub.subscribe(self._channel, self._suspensions_channel)
                # Subscribe first, then reload: nothing published in between is missed.
                await self.load()
                reloaded_at = time.monotonic()
                delay_s = 0.1
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._received(message["channel"].decode(), message["data"].decode())
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

    def _received(self, channel: str, data: str) -> None:
        if channel == self._suspensions_channel:
            user_id, _, rest = data.partition(":")
            flag, _, origin = rest.partition(":")
            if user_id.isdigit() and flag in ("0", "1") and origin != self._origin:
                self._apply_suspension(int(user_id), flag == "1")
            return
        head, _, tail = data.rpartition(":")
        if head and tail.isdigit():
            self._remember(head, int(tail))
