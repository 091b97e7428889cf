"""`SessionActivity`: each session's `last_seen_at`, kept without a write per request.

A request only notes its session in memory, and only when the session was last noted
more than `SEEN_INTERVAL_S` ago; a background task writes the noted sessions in one
statement every `FLUSH_INTERVAL_S`. So a session's `last_seen_at` is at most about a
minute and a quarter behind, and a busy server writes at most one row per active session
a minute, off the request path. Both maps are bounded: past their maximum the oldest
knowledge is dropped (a session is then noted once more, or one minute's sighting lost).
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
from loguru import logger

from probo.auth import store
from probo.infra import UNAVAILABLE_ERRORS, connection

SEEN_INTERVAL_S = 60.0
FLUSH_INTERVAL_S = 15.0
SESSIONS_TRACKED_MAX = 100_000
SESSIONS_PENDING_MAX = 100_000


class SessionActivity:
    def __init__(self, pool: asyncpg.Pool, *, seen_interval_s: float = SEEN_INTERVAL_S) -> None:
        self._pool = pool
        self.seen_interval_s = seen_interval_s
        self._noted_at: dict[str, float] = {}  # jti -> when last noted (monotonic)
        self._pending: set[str] = set()

    def seen(self, jti: str) -> None:
        """A request of this session: noted for the next write if due. Never awaits."""
        now = time.monotonic()
        noted_at = self._noted_at.get(jti)
        if noted_at is not None and now - noted_at < self.seen_interval_s:
            return
        if len(self._noted_at) >= SESSIONS_TRACKED_MAX:
            self._noted_at.clear()
        self._noted_at[jti] = now
        if len(self._pending) < SESSIONS_PENDING_MAX:
            self._pending.add(jti)

    def started(self, jti: str) -> None:
        """A session just written with `last_seen_at = now()`: nothing to note for a minute."""
        if len(self._noted_at) >= SESSIONS_TRACKED_MAX:
            self._noted_at.clear()
        self._noted_at[jti] = time.monotonic()

    def forget(self, jti: str) -> None:
        """The session's token is replaced: a request already seen is not waited for."""
        self._noted_at.pop(jti, None)

    async def flush(self) -> int:
        """Write the noted sessions' `last_seen_at`; returns how many were noted."""
        if not self._pending:
            return 0
        jtis, self._pending = list(self._pending), set()
        async with connection(self._pool) as conn:
            await store.touch_sessions(conn, jtis)
        return len(jtis)

    async def run(self) -> None:
        """Flush every FLUSH_INTERVAL_S until cancelled; a failed write is dropped."""
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except UNAVAILABLE_ERRORS as exc:
                # A sighting is worth less than a retry queue: the next minute notes it again.
                logger.warning("session activity not written ({})", type(exc).__name__)
            except Exception:
                logger.exception("session activity not written")
