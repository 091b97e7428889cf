"""Ledger posting throughput: `post_transfers` committed per transaction, by batch size.

The baseline the ordered group-commit writer builds on: how many transfers per second
one connection commits when each transaction carries 1, 100 or 1000 transfers between
1000 funded users.

    make bench            # or: python -m bench.ledger
"""

from __future__ import annotations

import platform
import random
import time

import asyncpg
import uvloop

from bench._servers import drop_database, fresh_database, postgres_admin_url
from probo import ledger
from probo.ledger import PLATFORM_BANK_ACCOUNT_ID, Transfer

USERS = 1000
TRANSFERS_PER_CASE = 20_000
BATCH_SIZES = (1, 100, 1000)
FUNDING = 10**12


async def _setup(conn: asyncpg.Connection) -> list[int]:
    await conn.execute(
        "INSERT INTO users (phone, referral_code) "
        "SELECT '+9190' || lpad(i::text, 8, '0'), "
        "       translate(lpad(i::text, 8, '0'), '0123456789', 'ABCDEFGHJK') FROM generate_series(1, $1) i",
        USERS,
    )
    await conn.execute("INSERT INTO accounts (kind, user_id) SELECT 'user_cash', id FROM users")
    accounts = [
        r["id"]
        for r in await conn.fetch("SELECT id FROM accounts WHERE kind = 'user_cash' ORDER BY id")
    ]
    async with conn.transaction():
        await ledger.post_transfers(
            conn,
            [
                Transfer(PLATFORM_BANK_ACCOUNT_ID, a, FUNDING, "deposit", "deposit", a)
                for a in accounts
            ],
        )
    return accounts


async def _case(conn: asyncpg.Connection, accounts: list[int], batch_size: int) -> float:
    rng = random.Random(batch_size)
    batches = TRANSFERS_PER_CASE // batch_size
    started = time.perf_counter()
    for b in range(batches):
        transfers = []
        for _ in range(batch_size):
            a, c = rng.sample(accounts, 2)
            transfers.append(Transfer(a, c, rng.randint(1, 1000), "trade", "trade", b))
        async with conn.transaction():
            await ledger.post_transfers(conn, transfers)
    return batches * batch_size / (time.perf_counter() - started)


async def main() -> None:
    with postgres_admin_url() as admin_url:
        name, url = await fresh_database(admin_url)
        try:
            conn = await asyncpg.connect(url)
            accounts = await _setup(conn)
            print(
                f"ledger posting, {USERS} users, {TRANSFERS_PER_CASE} transfers per case, "
                f"python {platform.python_version()}, 1 connection"
            )
            for batch_size in BATCH_SIZES:
                rate = await _case(conn, accounts, batch_size)
                print(f"  batch {batch_size:>5}: {rate:>10,.0f} transfers/s committed")
            breaches = await ledger.ledger_breaches(conn)
            print("  audit after run:", "clean" if not breaches else breaches)
            await conn.close()
        finally:
            await drop_database(admin_url, name)


if __name__ == "__main__":
    uvloop.run(main())
