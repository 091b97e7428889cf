"""The app's services without HTTP, for the service-level tests (tests/integration/
test_*_service.py): they call WalletService, KycService, ReferralService and
MarketService directly, against real Postgres and Redis, with the real engine and
ledger writer behind them.

The services are built by the app's own composition root (`create_app`'s lifespan), so
they are wired exactly as in `probo serve`: the signup hook, the engine mirror, the
market clock and every background task included. `running_services` is the one place
that reads what the app built (`probo.services.services_of`) and adds the recorded SMS.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from probo import auth, kyc, markets, payments, referral, trading, wallet
from probo.app import create_app
from probo.infra import Settings
from probo.kyc.types import KycSubmission
from probo.ledger import EngineState, LedgerWriter, engine_breaches, ledger_breaches
from probo.markets.types import MarketCreate
from probo.orderbook import Engine, EngineMirror
from probo.services import services_of
from probo.trading.types import LimitOrderRequest
from probo.web import ApiError
from tests.conftest import ADMIN_PHONE, create_database, drop_database, make_settings

TEST_IP = "127.0.0.1"
WRITER_DRAIN_S = 10.0


@dataclass(frozen=True)
class Services:
    settings: Settings
    pool: asyncpg.Pool
    engine: Engine
    writer: LedgerWriter
    mirror: EngineMirror
    auth: auth.AuthService
    wallet: wallet.WalletService
    kyc: kyc.KycService
    referral: referral.ReferralService
    markets: markets.MarketService
    trading: trading.TradingService
    sms: RecordingSms


class RecordingSms:
    """An SMS provider that keeps the last OTP sent to each phone."""

    def __init__(self) -> None:
        self.last_otp: dict[str, str] = {}

    async def send(self, to: str, body: str, otp: str) -> None:
        self.last_otp[to] = otp

    async def close(self) -> None:
        pass


@asynccontextmanager
async def running_services(
    settings: Settings, *, provider: payments.PaymentProvider | None = None
) -> AsyncIterator[Services]:
    """Every service, built and started as the app does it, and stopped after."""
    sms = RecordingSms()
    app = create_app(settings, provider=provider, sms=sms)
    started = asyncio.Event()
    stopping = asyncio.Event()

    async def lifespan() -> None:
        # Entered and left in one task of its own: litestar's lifespan holds an anyio
        # task group, and a fixture's teardown runs in another task than its setup.
        async with app.lifespan():
            started.set()
            await stopping.wait()

    task = asyncio.create_task(lifespan(), name="services-lifespan")
    started_waiter = asyncio.ensure_future(started.wait())
    await asyncio.wait([task, started_waiter], return_when=asyncio.FIRST_COMPLETED)
    started_waiter.cancel()
    if task.done():
        task.result()  # the start failed: raise why
    try:
        built = services_of(app)
        yield Services(
            settings=built.settings,
            pool=built.pool,
            engine=built.engine,
            writer=built.writer,
            mirror=built.mirror,
            auth=built.auth,
            wallet=built.wallet,
            kyc=built.kyc,
            referral=built.referral,
            markets=built.markets,
            trading=built.trading,
            sms=sms,
        )
    finally:
        stopping.set()
        await task


@pytest.fixture(scope="module")
def payment_provider() -> payments.PaymentProvider | None:
    """The provider deposits and payouts go through; None is the app's own
    (simulated). A test module overrides this fixture to script its answers."""
    return None


@pytest_asyncio.fixture(scope="module")
async def services(
    server_urls: tuple[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    payment_provider: payments.PaymentProvider | None,
) -> AsyncIterator[Services]:
    """The services of one test module, on a database and a Redis prefix of its own;
    the ledger must hold when the module is done."""
    admin_url, redis_url = server_urls
    database_url = await create_database(admin_url)
    prefix = f"probo-services-{uuid.uuid4().hex[:10]}:"
    outbox = tmp_path_factory.mktemp("sms") / "outbox.jsonl"  # unused: SMS are recorded
    settings = make_settings(database_url, redis_url, prefix, outbox)
    try:
        async with running_services(settings, provider=payment_provider) as running:
            yield running
        conn = await asyncpg.connect(database_url)
        try:
            assert await ledger_breaches(conn) == []
        finally:
            await conn.close()
    finally:
        await drop_database(admin_url, database_url)
        client = aioredis.Redis.from_url(redis_url)
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


# --- people and markets, made through the services ----------------------------------------

_phones = itertools.count(random.randrange(10_000_000, 80_000_000))


def new_phone() -> str:
    return f"+9197{next(_phones):08d}"


async def sign_up(services: Services, phone: str | None = None) -> int:
    """A new user through the OTP login (the signup bonus included); their id."""
    phone = phone or new_phone()
    await services.auth.request_otp(phone, TEST_IP)
    result = await services.auth.verify(phone, services.sms.last_otp[phone], TEST_IP)
    return result.user.id


async def admin_id(services: Services) -> int:
    """The admin (ADMIN_PHONE), signed up on first use."""
    async with services.pool.acquire() as conn:
        found = await conn.fetchval("SELECT id FROM users WHERE phone = $1", ADMIN_PHONE)
    return found or await sign_up(services, ADMIN_PHONE)


async def funded_user(services: Services, deposit: int) -> int:
    """A new user holding the signup bonus plus `deposit` paise."""
    user_id = await sign_up(services)
    if deposit:
        await services.wallet.deposits.create(user_id, deposit, uuid.uuid4().hex)
    return user_id


_pans = itertools.count()


def new_pan() -> str:
    """A PAN no other call of this run returns."""
    n = next(_pans)
    letters = "".join(chr(ord("A") + (n // 10_000 // 26**i) % 26) for i in range(3))
    return f"AB{letters}{n % 10_000:04d}K"


def kyc_submission(**fields: str) -> KycSubmission:
    values = {
        "pan": new_pan(),
        "name": "Asha Verma",
        "bank_account": "123456789012",
        "ifsc": "HDFC0001234",
        **fields,
    }
    return KycSubmission(**values)


async def verified_user(services: Services, deposit: int) -> int:
    """A funded user whose KYC an admin has verified."""
    user_id = await funded_user(services, deposit)
    view, _ = await services.kyc.submit(user_id, kyc_submission())
    assert view.id is not None
    await services.kyc.decide(await admin_id(services), view.id, "VERIFIED", None)
    return user_id


def market_request(**fields: object) -> MarketCreate:
    """A market creation request, decoded from JSON as the HTTP layer decodes it (its
    field constraints are checked there)."""
    body = {
        "title": f"Will test {uuid.uuid4().hex[:6]} pass?",
        "category": "testing",
        "closes_at": (datetime.now(UTC) + timedelta(days=7)).isoformat(),
        **fields,
    }
    return msgspec.json.decode(msgspec.json.encode(body), type=MarketCreate)


async def new_market(services: Services, **fields: object) -> int:
    return (await services.markets.create(market_request(**fields))).id


async def place(
    services: Services, user_id: int, market_id: int, outcome: str, side: str, quantity: int,
    price: int,
) -> trading.types.Order:  # fmt: skip
    order, created = await services.trading.place(
        user_id,
        LimitOrderRequest(
            market_id=market_id, outcome=outcome, side=side, quantity=quantity, price=price
        ),  # type: ignore[arg-type]
    )
    assert created
    return order


async def warm_pool(services: Services) -> None:
    """Open every connection the pool may hold, so that requests started together run
    their transactions together instead of queueing behind new connections."""
    size = services.settings.database_pool_max
    held = await asyncio.gather(*(services.pool.acquire() for _ in range(size)))
    for conn in held:
        # A connection introspects an array type the first time a query uses one, a
        # round trip that would hold back the requests drawing fresh connections.
        await conn.fetchval("SELECT $1::bigint[]", [1])
        await services.pool.release(conn)


# --- what a caller sees -------------------------------------------------------------------


async def refused(call: Awaitable[object]) -> ApiError:
    """The ApiError that awaiting `call` raises (its status_code and code are the answer
    the API gives)."""
    with pytest.raises(ApiError) as raised:
        await call
    return raised.value


async def balance(services: Services, user_id: int) -> int:
    return (await services.wallet.wallet(user_id)).balance


async def ledger_problems(services: Services) -> list[str]:
    """SPEC §3: invariants 1-4 in Postgres, and 5 (the engine, idle and with the writer
    drained, equals Postgres). Empty when all hold."""
    services.engine.exchange.validate()
    cash, positions, escrow, open_orders = services.engine.state()
    assert await services.writer.drain(WRITER_DRAIN_S)
    async with services.pool.acquire() as conn:
        breaches = await ledger_breaches(conn)
        breaches += await engine_breaches(
            conn,
            EngineState(cash=cash, positions=positions, escrow=escrow, open_orders=open_orders),
        )
    return [breach.message for breach in breaches]
