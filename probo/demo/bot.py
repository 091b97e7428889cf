"""The liquidity bot: two makers keep every open demo market's book two-sided around a
fair price that drifts slowly between ₹2 and ₹8 YES, and a taker now and then crosses
the spread, so trades happen a few times a minute per market.

Every action is a user's action through the trading service (its validation, its rate
limit, the engine and the ledger writer), and every rupee a bot has came from a deposit
through the wallet service. Holdings stay bounded: a bot that holds an outcome sells it
before it buys the other, merges YES + NO pairs back into cash, and stops buying an
outcome past `HOLDING_MAX`; its cash is topped up by a deposit when it runs low.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import UTC, datetime

import asyncpg
from loguru import logger

from probo.auth import AuthService
from probo.demo import store
from probo.demo.seed import bot_ids
from probo.infra import connection
from probo.markets import MarketService
from probo.orderbook import CONTRACT_PAYOUT, own_price
from probo.trading import LimitOrderRequest, Order, TradingService
from probo.wallet import WalletService
from probo.web import ApiError

ROUND_INTERVAL_S = 2.0  # each open demo market gets a round this often
MARKETS_MAX = 20  # demo markets quoted (seeding creates 5)
QUOTE_LEVELS = 3  # price levels per side, per maker
QUOTE_QUANTITY_MIN = 5
QUOTE_QUANTITY_MAX = 20
QUOTE_AGE_MAX_S = 300.0  # older quotes are replaced, so the book does not go stale
TAKE_CHANCE = 0.1  # per market round: about 3 trades a minute with 2 s rounds
TAKE_QUANTITY_MAX = 10
DRIFT_CHANCE = 0.3  # per market round, the fair price moves a tick up or down
FAIR_PRICE_MIN = 200  # YES paise
FAIR_PRICE_MAX = 800
HOLDING_MAX = 200  # contracts of one outcome in one market a bot buys up to
TOP_UP_BELOW = 200_000  # available paise under which a bot deposits again
TOP_UP_AMOUNT = 1_000_000
OPEN_ORDERS_READ_MAX = 200  # a maker has at most 2 × QUOTE_LEVELS open per market


def _yes_side(order: Order) -> tuple[str, int]:
    """("bid" | "ask", YES price) of an order in the book's YES terms (SPEC §6)."""
    buys_yes_side = (order.outcome == "yes") == (order.side == "buy")
    assert order.price is not None, "the bot places only limit orders"
    return ("bid" if buys_yes_side else "ask"), own_price(order.outcome, order.price)


class _Holding:
    """A bot's contracts in one market: held, and free (not locked by a sell)."""

    def __init__(self, yes_held: int, no_held: int, yes_free: int, no_free: int) -> None:
        self.yes_held = yes_held
        self.no_held = no_held
        self.yes = yes_free
        self.no = no_free


def _stop_if_asked() -> None:
    """End the loop when it was asked to: on Python 3.11 `asyncio.wait_for` (which the
    services' calls use) can lose a cancellation arriving just as its wait completes, and
    the loop would otherwise run on after being cancelled."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class LiquidityBot:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        auth: AuthService,
        markets: MarketService,
        trading: TradingService,
        wallet: WalletService,
        round_interval_s: float = ROUND_INTERVAL_S,
        rng: random.Random | None = None,
    ) -> None:
        self._pool = pool
        self._auth = auth
        self._markets = markets
        self._trading = trading
        self._wallet = wallet
        self._round_interval_s = round_interval_s
        self._rng = rng or random.Random()
        self._fair: dict[int, int] = {}  # market id -> fair YES price
        self._tick: dict[int, int] = {}
        self._makers: list[int] = []
        self._taker = 0

    async def run(self) -> None:
        """Until cancelled. Errors are logged and the next round goes on."""
        async with connection(self._pool) as conn:
            if not await store.open_demo_markets(conn, MARKETS_MAX):
                logger.info("no open demo market: the liquidity bot has nothing to do")
                return
        *self._makers, self._taker = await bot_ids(self._auth)
        for bot in (*self._makers, self._taker):  # a previous run's quotes are stale
            await self._trading.cancel_all(bot, None)
        logger.info("demo liquidity bot running, a round every {} s", self._round_interval_s)
        while True:
            _stop_if_asked()
            started = time.monotonic()
            try:
                await self.round()
            except Exception:
                logger.exception("demo liquidity bot: round failed")
            elapsed_s = time.monotonic() - started
            await asyncio.sleep(max(0.0, self._round_interval_s - elapsed_s))

    async def round(self) -> None:
        async with connection(self._pool) as conn:
            market_ids = await store.open_demo_markets(conn, MARKETS_MAX)
        for market_id in market_ids:
            try:
                await self._market_round(market_id)
            except ApiError as exc:  # paused or closed meanwhile, a rate limit, funds
                logger.debug("demo market {}: {} {}", market_id, exc.code, exc.message)
        for bot in (*self._makers, self._taker):
            await self._top_up(bot)

    async def _market_round(self, market_id: int) -> None:
        fair = await self._drifted_fair(market_id)
        tick = self._tick[market_id]
        for maker in self._makers:
            await self._quote(maker, market_id, fair, tick)
        if self._rng.random() < TAKE_CHANCE:
            await self._take(market_id, fair, tick)

    async def _drifted_fair(self, market_id: int) -> int:
        fair = self._fair.get(market_id)
        if fair is None:  # start at the last trade, or anywhere in the range
            market = await self._markets.get(market_id)
            tick = self._tick[market_id] = market.tick
            start = market.last_price or self._rng.randint(FAIR_PRICE_MIN, FAIR_PRICE_MAX)
            fair = round(start / tick) * tick
        tick = self._tick[market_id]
        if self._rng.random() < DRIFT_CHANCE:
            fair += self._rng.choice((-tick, tick))
        low = -(-FAIR_PRICE_MIN // tick) * tick
        high = FAIR_PRICE_MAX // tick * tick
        self._fair[market_id] = fair = min(max(fair, low), high)
        return fair

    async def _holding(self, bot: int, market_id: int) -> _Holding:
        """The bot's free contracts, after merging any YES + NO pairs back into cash."""
        position = await self._trading.position(bot, market_id)
        yes_free = position.yes_quantity - position.yes_locked
        no_free = position.no_quantity - position.no_locked
        pairs = min(yes_free, no_free)
        if pairs > 0:
            await self._trading.pairs(bot, market_id, "merge", pairs)
        return _Holding(
            position.yes_quantity - pairs, position.no_quantity - pairs,
            yes_free - pairs, no_free - pairs,
        )  # fmt: skip

    async def _quote(self, maker: int, market_id: int, fair: int, tick: int) -> None:
        """Keep QUOTE_LEVELS bids below the fair price and as many asks above it; cancel
        quotes off those levels or older than QUOTE_AGE_MAX_S."""
        holding = await self._holding(maker, market_id)
        wanted = {
            "bid": {fair - k * tick for k in range(1, QUOTE_LEVELS + 1) if fair - k * tick >= tick},
            "ask": {
                fair + k * tick
                for k in range(1, QUOTE_LEVELS + 1)
                if fair + k * tick <= CONTRACT_PAYOUT - tick
            },
        }
        page = await self._trading.orders(
            maker,
            status="open",
            market_id=market_id,
            client_order_id=None,
            limit=OPEN_ORDERS_READ_MAX,
            before_id=None,
        )
        now = datetime.now(UTC)
        for order in page.items:
            side, yes_price = _yes_side(order)
            fresh = (now - order.created_at).total_seconds() < QUOTE_AGE_MAX_S
            if fresh and yes_price in wanted[side]:
                wanted[side].discard(yes_price)  # kept; a second order there is canceled
                continue
            await self._cancel(maker, order.id)
        for yes_price in sorted(wanted["bid"]):
            quantity = self._rng.randint(QUOTE_QUANTITY_MIN, QUOTE_QUANTITY_MAX)
            if holding.no > 0:  # sell NO: a YES bid at 1000 - its price
                quantity = min(quantity, holding.no)
                holding.no -= quantity
                await self._place(maker, market_id, "no", "sell", yes_price, quantity, "gtc")
            elif holding.yes_held < HOLDING_MAX:
                await self._place(maker, market_id, "yes", "buy", yes_price, quantity, "gtc")
        for yes_price in sorted(wanted["ask"]):
            quantity = self._rng.randint(QUOTE_QUANTITY_MIN, QUOTE_QUANTITY_MAX)
            if holding.yes > 0:
                quantity = min(quantity, holding.yes)
                holding.yes -= quantity
                await self._place(maker, market_id, "yes", "sell", yes_price, quantity, "gtc")
            elif holding.no_held < HOLDING_MAX:
                await self._place(maker, market_id, "no", "buy", yes_price, quantity, "gtc")

    async def _take(self, market_id: int, fair: int, tick: int) -> None:
        """Cross the spread once, immediate-or-cancel, against the makers' best level."""
        holding = await self._holding(self._taker, market_id)
        quantity = self._rng.randint(1, TAKE_QUANTITY_MAX)
        wants_yes = self._rng.random() < 0.5
        if holding.yes_held >= HOLDING_MAX:
            wants_yes = False
        elif holding.no_held >= HOLDING_MAX:
            wants_yes = True
        if wants_yes:  # lift the best YES ask
            yes_price = fair + tick
            if holding.no > 0:
                await self._place(
                    self._taker, market_id, "no", "sell", yes_price, min(quantity, holding.no)
                )
            else:
                await self._place(self._taker, market_id, "yes", "buy", yes_price, quantity)
        else:  # hit the best YES bid
            yes_price = fair - tick
            if holding.yes > 0:
                await self._place(
                    self._taker, market_id, "yes", "sell", yes_price, min(quantity, holding.yes)
                )
            else:
                await self._place(self._taker, market_id, "no", "buy", yes_price, quantity)

    async def _place(
        self,
        bot: int,
        market_id: int,
        outcome: str,
        side: str,
        yes_price: int,
        quantity: int,
        time_in_force: str = "ioc",
    ) -> None:
        request = LimitOrderRequest(
            market_id=market_id,
            outcome=outcome,  # type: ignore[arg-type]
            side=side,  # type: ignore[arg-type]
            quantity=quantity,
            price=own_price(outcome, yes_price),
            time_in_force=time_in_force,  # type: ignore[arg-type]
        )
        try:
            await self._trading.place(bot, request)
        except ApiError as exc:  # funds, a rate limit, the market paused: next round
            logger.debug("demo bot {} order refused: {} {}", bot, exc.code, exc.message)

    async def _cancel(self, bot: int, order_id: int) -> None:
        try:
            await self._trading.cancel(bot, order_id)
        except ApiError as exc:  # filled or canceled since it was read
            logger.debug("demo bot {} cancel refused: {} {}", bot, exc.code, exc.message)

    async def _top_up(self, bot: int) -> None:
        wallet = await self._wallet.wallet(bot)
        if wallet.available < TOP_UP_BELOW:
            await self._wallet.deposits.create(
                bot, TOP_UP_AMOUNT, f"demo-top-up-{uuid.uuid4().hex}"
            )
            logger.info("demo bot {} topped up by {} paise", bot, TOP_UP_AMOUNT)
