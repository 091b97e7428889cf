"""The payments reconciler: webhooks are not guaranteed to arrive, so pending deposits
and unconfirmed payouts are checked with the provider, every few seconds, in bounded
rounds (SPEC §11)."""

from __future__ import annotations

import asyncio

from loguru import logger

from probo.infra import UNAVAILABLE_ERRORS, PoolExhausted
from probo.wallet.service import WalletService

RECONCILE_EVERY_MAX_S = 10.0  # a stale deposit is checked within this of becoming stale
RECONCILE_EVERY_MIN_S = 0.5


def reconcile_every_s(reconcile_after_s: float) -> float:
    return min(RECONCILE_EVERY_MAX_S, max(RECONCILE_EVERY_MIN_S, reconcile_after_s / 2))


async def run_payments_reconciler(wallet: WalletService, reconcile_after_s: float) -> None:
    every_s = reconcile_every_s(reconcile_after_s)
    while True:
        await asyncio.sleep(every_s)
        try:
            await wallet.reconcile_payments(every_s)
        except UNAVAILABLE_ERRORS + (PoolExhausted,) as exc:
            logger.warning("payments reconciler: the database is unavailable: {!r}", exc)
        except Exception:
            logger.exception("payments reconciler round failed")
