"""The engine mirror: hands committed outside credits to the engine, exactly once.

A credit's transaction also writes an `engine_credit_outbox` row. After commit,
`deliver` gives the engine the credit (up to `engine_mirror_tries_max` tries with
backoff) and removes the row. The caller waits at most `engine_mirror_wait_ms`; the
delivery goes on in the background past that. Whatever every try missed is logged,
counted, and applied later by the reconciler, which sweeps rows older than a grace
period. The engine ignores a transfer id it has already applied, so the mirror and
the reconciler may race without paying twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

import asyncpg
from loguru import logger

from probo.infra import UNAVAILABLE_ERRORS, connection, metrics
from probo.orderbook import store
from probo.orderbook.credits import CreateUser, EngineCredit, EngineUnavailable

RETRY_BACKOFF_S = (0.05, 0.2, 0.5, 1.0)
DELIVERIES_IN_FLIGHT_MAX = 10_000
RECONCILE_BATCH_MAX = 1000
RECONCILE_GRACE_S = 2.0


class CreditSink(Protocol):
    """What the mirror needs of the engine."""

    def create_user(self, command: CreateUser) -> None: ...
    async def apply_credit(self, credit: EngineCredit) -> bool: ...
    def forget_applied(self, transfer_ids: list[int]) -> None: ...


class EngineMirror:
    def __init__(
        self,
        sink: CreditSink,
        pool: asyncpg.Pool,
        *,
        tries_max: int,
        wait_ms: int,
        reconcile_interval_s: float,
    ) -> None:
        self._sink = sink
        self._pool = pool
        self._tries_max = tries_max
        self._wait_s = wait_ms / 1000
        self.reconcile_interval_s = reconcile_interval_s
        self._in_flight: set[asyncio.Task[bool]] = set()

    async def deliver(
        self, credits: Sequence[EngineCredit], *, new_user_id: int | None = None
    ) -> bool:
        """Give the engine these committed credits; True if it holds them within the wait."""
        if len(self._in_flight) >= DELIVERIES_IN_FLIGHT_MAX:
            logger.warning(
                "engine mirror saturated; the reconciler will apply {} credit(s)", len(credits)
            )
            metrics.ENGINE_MIRROR_FAILURES.inc(len(credits))
            return False
        task = asyncio.create_task(self._deliver_with_retries(list(credits), new_user_id))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        try:
            return await asyncio.wait_for(asyncio.shield(task), self._wait_s)
        except TimeoutError:
            return False

    async def _deliver_with_retries(
        self, credits: list[EngineCredit], new_user_id: int | None
    ) -> bool:
        for attempt in range(1, self._tries_max + 1):
            try:
                if new_user_id is not None:
                    self._sink.create_user(CreateUser(user_id=new_user_id))
                for credit in credits:
                    if await self._sink.apply_credit(credit):
                        metrics.ENGINE_MIRROR_APPLIED.labels("direct").inc()
                break
            except EngineUnavailable as exc:
                if attempt == self._tries_max:
                    metrics.ENGINE_MIRROR_FAILURES.inc(len(credits))
                    logger.bind(transfer_ids=[c.transfer_id for c in credits]).error(
                        "engine did not take credits after {} tries ({}); the reconciler will",
                        attempt,
                        exc,
                    )
                    return False
                await asyncio.sleep(RETRY_BACKOFF_S[min(attempt - 1, len(RETRY_BACKOFF_S) - 1)])
        await self._clear_outbox([c.transfer_id for c in credits])
        return True

    async def _clear_outbox(self, transfer_ids: list[int]) -> None:
        if not transfer_ids:
            return
        try:
            async with connection(self._pool) as conn:
                # Waits for a reconciler holding these rows; then they are gone either way.
                await store.delete_credit_outbox(conn, transfer_ids)
        except UNAVAILABLE_ERRORS as exc:
            # The engine holds the credits; the reconciler clears the rows later.
            logger.warning("credit outbox not cleared ({}); will retry", type(exc).__name__)
            return
        self._sink.forget_applied(transfer_ids)

    async def reconcile_once(self, *, grace_s: float = RECONCILE_GRACE_S) -> int:
        """Apply credits whose delivery was missed; returns how many the engine newly took.

        The rows stay locked from selection until their deletion commits, so a mirror
        delivery cannot clear and forget a credit between our read and our apply.
        """
        applied = 0
        async with connection(self._pool) as conn, conn.transaction():
            rows = await store.lock_stale_credits(conn, grace_s, RECONCILE_BATCH_MAX)
            for row in rows:
                credit = EngineCredit(
                    command=row["command"],
                    transfer_id=row["transfer_id"],
                    user_id=row["user_id"],
                    amount=row["amount"],
                )
                self._sink.create_user(CreateUser(user_id=credit.user_id))
                if await self._sink.apply_credit(credit):
                    applied += 1
                    metrics.ENGINE_MIRROR_APPLIED.labels("reconciler").inc()
            transfer_ids = [row["transfer_id"] for row in rows]
            if transfer_ids:
                await store.delete_credit_outbox(conn, transfer_ids)
        self._sink.forget_applied(transfer_ids)
        if applied:
            logger.warning("reconciler applied {} missed credit(s)", applied)
        return applied

    async def run_reconciler(self) -> None:
        """Sweep the outbox every `reconcile_interval_s` until cancelled."""
        while True:
            await asyncio.sleep(self.reconcile_interval_s)
            try:
                await self.reconcile_once()
            except EngineUnavailable:
                continue
            except UNAVAILABLE_ERRORS as exc:
                logger.warning("reconciler cannot reach Postgres ({})", type(exc).__name__)
            except Exception:
                # A bug here must not silently end reconciliation for the process's life.
                logger.exception(
                    "reconciler pass failed; next pass in {} s", self.reconcile_interval_s
                )

    async def drain(self) -> None:
        """Wait for deliveries still in flight (at shutdown)."""
        if self._in_flight:
            await asyncio.wait(list(self._in_flight), timeout=5)


async def record_credit(
    conn: asyncpg.Connection, command: str, transfer_id: int, user_id: int, amount: int
) -> EngineCredit:
    """Write the outbox row for a credit, inside the credit's own transaction."""
    assert conn.is_in_transaction(), "the outbox row must commit with its transfer"
    await store.insert_credit_outbox(conn, command, transfer_id, user_id, amount)
    return EngineCredit(command=command, transfer_id=transfer_id, user_id=user_id, amount=amount)  # type: ignore[arg-type]
