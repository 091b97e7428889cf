"""`create_app(settings)`: the one composition root. Every service is built and wired
here, in the application's lifespan, and torn down in reverse order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import asyncpg
import redis.asyncio as aioredis
from litestar import Litestar, Request
from litestar.types import Receive, Scope, Send
from loguru import logger

from probo import (
    admin,
    auth,
    demo,
    health,
    kyc,
    markets,
    payments,
    realtime,
    referral,
    trading,
    wallet,
    webapp,
)
from probo.infra import (
    Settings,
    collector,
    connect_redis,
    connect_redis_subscriber,
    create_pool,
    migrate,
    request_context_middleware,
)
from probo.ledger import LedgerWriter
from probo.orderbook import Engine, EngineMirror, Entry
from probo.services import Services
from probo.web import (
    PublishedOpenAPIConfig,
    StrictStructSchemaPlugin,
    check_body_strictly,
    exception_handlers,
    refuse_unknown_document_paths,
)

VERSION = "0.1.0"
SHUTDOWN_DRAIN_S = 10.0  # how long a stopping server waits for the ledger writer
CANCEL_TRIES_MAX = 20  # times a background task is asked to stop
CANCEL_WAIT_S = 0.5  # between two asks


async def _before_request(request: Request) -> None:
    refuse_unknown_document_paths(request)
    auth.authenticate_first(request)
    await check_body_strictly(request)


class _ProboApp(Litestar):
    """Litestar, keeping the server's own ASGI `send` of each WebSocket in its scope:
    every layer inside wraps it, and the live feeds write frames to the transport of
    the protocol behind the original (probo/realtime/subscriber.py)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        if scope["type"] == "websocket":
            scope[realtime.RAW_SEND_SCOPE_KEY] = send  # type: ignore[literal-required]
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    provider: payments.PaymentProvider | None = None,
    sms: auth.SmsProvider | None = None,
) -> Litestar:
    """The HTTP application. `provider` and `sms` replace the configured ones (tests)."""
    assert settings.database_url and settings.redis_url, (
        "resolve embedded servers before create_app"
    )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with _serving(app, settings, provider, sms):
            yield

    return _ProboApp(
        route_handlers=[
            *health.route_handlers,
            *auth.route_handlers,
            *wallet.route_handlers,
            *kyc.route_handlers,
            *referral.route_handlers,
            *trading.route_handlers,
            *markets.route_handlers,
            *realtime.route_handlers,
            *admin.route_handlers,
            *webapp.route_handlers,
        ],
        dependencies={
            **auth.dependencies,
            **wallet.dependencies,
            **kyc.dependencies,
            **referral.dependencies,
            **trading.dependencies,
            **markets.dependencies,
            **admin.dependencies,
        },
        lifespan=[lifespan],
        before_request=_before_request,
        exception_handlers=exception_handlers,  # type: ignore[arg-type]
        middleware=[request_context_middleware],
        request_max_body_size=settings.request_body_bytes_max,
        openapi_config=PublishedOpenAPIConfig(title="Probo", version=VERSION, path="/schema"),
        plugins=[StrictStructSchemaPlugin()],
        debug=False,
    )


@asynccontextmanager
async def _serving(
    app: Litestar,
    settings: Settings,
    provider: payments.PaymentProvider | None,
    sms: auth.SmsProvider | None,
) -> AsyncIterator[None]:
    """Connect, recover, build the services, start the background tasks; serve; then
    drain and tear down in reverse order."""
    async with AsyncExitStack() as stack:
        pool = await create_pool(settings.database_url, size_max=settings.database_pool_max)
        stack.push_async_callback(pool.close)
        redis = connect_redis(settings.redis_url)
        stack.push_async_callback(redis.aclose)
        subscriber = connect_redis_subscriber(settings.redis_url)
        stack.push_async_callback(subscriber.aclose)
        sms_provider = sms or _sms_provider(settings)
        stack.push_async_callback(sms_provider.close)
        payment_provider = provider or _payment_provider(settings)
        stack.push_async_callback(payment_provider.close)
        async with pool.acquire() as conn:
            await migrate(conn)
        revocations = auth.RevocationList(
            pool, redis, settings.redis_key_prefix, subscriber=subscriber
        )
        services = await _recovered_services(
            settings, pool, redis, revocations, payment_provider, sms_provider
        )
        stack.callback(collector.restore)
        await revocations.load()  # before ready: a restart never forgets a logout
        background = _start_background(services, revocations)
        stack.push_async_callback(_cancelled, background)
        bots = [asyncio.create_task(demo.run_demo(services), name="demo")] if settings.demo else []
        stack.push_async_callback(_cancelled, bots)
        app.state.services = services
        logger.info("probo ready on {}:{} ({})", settings.host, settings.port, settings.env)
        yield
        app.state.services = None
        await _cancelled(bots)  # no new orders while the ledger drains
        await _drained(services)


async def _recovered_services(
    settings: Settings,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    revocations: auth.RevocationList,
    payment_provider: payments.PaymentProvider,
    sms_provider: auth.SmsProvider,
) -> Services:
    """The engine recovered from Postgres, the ledger writer loaded and attached, the
    live feeds on its commits, and every service built on them."""
    engine = Engine()
    writer = LedgerWriter(settings.database_url, backlog_max=settings.ledger_backlog_max)
    await engine.recover(pool)
    async with pool.acquire() as conn:
        await writer.load(conn)
    engine.attach(writer)
    writer.engine = engine  # paused and rebuilt if the ledger refuses a decision
    hub = realtime.Hub(engine, pool, is_revoked=revocations.is_revoked)
    hub.load()  # the recovered books are the committed ones
    async with pool.acquire() as conn:  # the writer has not started: committed state
        hub.ticker.load(await markets.trade_totals(conn))
    writer.on_commit = hub.committed
    collector.settle_heap()  # the recovered heap lives as long as the process
    mirror = EngineMirror(
        engine,
        pool,
        tries_max=settings.engine_mirror_tries_max,
        wait_ms=settings.engine_mirror_wait_ms,
        reconcile_interval_s=settings.engine_reconcile_interval_s,
    )
    wallet_service = wallet.WalletService(
        settings=settings,
        pool=pool,
        engine=engine,
        mirror=mirror,
        provider=payment_provider,
    )
    market_service = markets.MarketService(
        pool=pool, engine=engine, hub=hub, ack_timeout_ms=settings.ack_timeout_ms
    )
    writer.on_commit = _each(market_service.stats.committed, hub.committed)
    trading_service = trading.TradingService(settings=settings, pool=pool, engine=engine)
    auth_service = auth.AuthService(
        settings=settings,
        pool=pool,
        otp_store=auth.OtpStore(redis, settings),
        sms=sms_provider,
        tokens=auth.TokenIssuer(settings.jwt_secret, settings.session_ttl_s),
        revocations=revocations,
        on_signup=wallet_service.open_wallet,
        kyc_status_of=kyc.kyc_status_of,
    )
    return Services(
        settings=settings,
        pool=pool,
        redis=redis,
        engine=engine,
        writer=writer,
        hub=hub,
        mirror=mirror,
        wallet=wallet_service,
        trading=trading_service,
        markets=market_service,
        kyc=kyc.KycService(pool),
        referral=referral.ReferralService(settings=settings, pool=pool, mirror=mirror),
        auth=auth_service,
        admin=admin.AdminService(
            pool=pool, auth=auth_service, trading=trading_service, wallet=wallet_service
        ),
    )


def _each(
    *consumers: Callable[[list[Entry]], None],
) -> Callable[[list[Entry]], None]:
    """One `on_commit` that hands each committed batch to every consumer, in order."""

    def committed(batch: list[Entry]) -> None:
        for consumer in consumers:
            consumer(batch)

    return committed


def _sms_provider(settings: Settings) -> auth.SmsProvider:
    return auth.build_sms_provider(
        settings.sms_provider,
        outbox_path=settings.sms_outbox,
        twilio_account_sid=settings.twilio_account_sid,
        twilio_auth_token=settings.twilio_auth_token,
        twilio_from=settings.twilio_from,
        twilio_base_url=settings.twilio_base_url,
    )


def _payment_provider(settings: Settings) -> payments.PaymentProvider:
    if settings.payments_provider == "cashfree":
        return payments.CashfreeProvider(
            client_id=settings.cashfree_client_id,
            client_secret=settings.cashfree_client_secret,
            pg_base_url=settings.cashfree_base_url,
            payout_base_url=settings.cashfree_payout_base_url,
        )
    return payments.SimulatedProvider()


def _start_background(
    services: Services, revocations: auth.RevocationList
) -> list[asyncio.Task[None]]:
    """The ledger writer, the feeds, the markets' tasks, and the periodic workers."""
    background = [
        asyncio.create_task(collector.run(), name="collector"),
        asyncio.create_task(services.writer.run(), name="ledger-writer"),
        asyncio.create_task(services.hub.run_user_feed(), name="user-feed"),
    ]
    services.engine.start()
    background += [
        asyncio.create_task(revocations.listen(), name="revocations"),
        asyncio.create_task(markets.run_market_clock(services.markets), name="market-clock"),
        asyncio.create_task(services.mirror.run_reconciler(), name="credit-reconciler"),
        asyncio.create_task(services.markets.stats.run(), name="market-stats"),
        asyncio.create_task(
            wallet.run_payments_reconciler(
                services.wallet, services.settings.payments_reconcile_after_s
            ),
            name="payments-reconciler",
        ),
        asyncio.create_task(services.auth.activity.run(), name="session-activity"),
    ]
    return background


async def _drained(services: Services) -> None:
    """Stopping: credits in flight reach the engine, everything decided reaches the ledger."""
    await services.mirror.drain()
    writer = services.writer
    if not await writer.drain(SHUTDOWN_DRAIN_S):
        logger.error(
            "stopping with {} unwritten ledger entries (never acknowledged)", writer.backlog
        )
    await services.engine.stop()


async def _cancelled(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel `tasks` and wait until they have ended. Asked again until they end: on
    Python 3.11 `asyncio.wait_for` can lose a cancellation that arrives just as what it
    waits for completes, and a task looping over such waits would run on."""
    pending = set(tasks)
    for _ in range(CANCEL_TRIES_MAX):
        if not pending:
            break
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=CANCEL_WAIT_S)
    if pending:
        logger.error("background tasks did not stop: {}", sorted(t.get_name() for t in pending))
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: each logs its own failures
