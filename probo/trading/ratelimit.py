"""The per-user order rate limit: a token bucket per user, in this process.

Redis is kept off the order path (SPEC §7), and one process owns the engine, so the
buckets live here. A user who stayed quiet for a second has a full bucket, so buckets
idle that long are dropped whenever the table reaches its bound.
"""

from __future__ import annotations

import time

USERS_TRACKED_MAX = 100_000


class OrderRateLimiter:
    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self._buckets: dict[int, list[float]] = {}  # user id -> [tokens, last refill]

    def take(self, user_id: int) -> float:
        """0 if the user may send an order now, else the seconds until they may."""
        now = time.monotonic()
        bucket = self._buckets.get(user_id)
        if bucket is None:
            if len(self._buckets) >= USERS_TRACKED_MAX:
                self._forget_idle(now)
            bucket = self._buckets[user_id] = [float(self.per_second), now]
        tokens = min(float(self.per_second), bucket[0] + (now - bucket[1]) * self.per_second)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.per_second

    def _forget_idle(self, now: float) -> None:
        idle = [user_id for user_id, (_, last) in self._buckets.items() if now - last >= 1.0]
        for user_id in idle:
            del self._buckets[user_id]
