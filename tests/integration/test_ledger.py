"""The ledger in Postgres: atomic postings, append-only transfers, non-negative cash,
and `probo audit` on a clean and on a deliberately corrupted database."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import asyncpg
import pytest

from probo import ledger
from probo.ledger import PLATFORM_BANK_ACCOUNT_ID, PLATFORM_BONUS_ACCOUNT_ID, Transfer


@pytest.fixture
def scratch_url(scratch_database: str) -> str:
    """A database of its own, free to corrupt."""
    return scratch_database


async def _new_user(conn: asyncpg.Connection, phone: str) -> tuple[int, int]:
    user_id = await conn.fetchval(
        "INSERT INTO users (phone, referral_code) VALUES ($1, $2) RETURNING id",
        phone,
        phone[-8:].replace("0", "A").replace("1", "B"),
    )
    async with conn.transaction():
        account_id = await ledger.open_user_account(conn, user_id)
    return user_id, account_id


async def _fund(conn: asyncpg.Connection, account_id: int, amount: int, ref_id: int = 1) -> None:
    async with conn.transaction():
        await ledger.post_transfers(
            conn,
            [Transfer(PLATFORM_BANK_ACCOUNT_ID, account_id, amount, "deposit", "deposit", ref_id)],
        )


def _audit(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "probo", "audit", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_a_posting_moves_balances_and_sums_to_zero(scratch_url: str) -> None:
    conn = await asyncpg.connect(scratch_url)
    try:
        _, alice = await _new_user(conn, "+919800000002")
        _, bob = await _new_user(conn, "+919800000003")
        await _fund(conn, alice, 10_000)
        async with conn.transaction():
            await ledger.post_transfers(conn, [Transfer(alice, bob, 2_500, "trade", "trade", 7)])
        balances = dict(
            await conn.fetch(
                "SELECT id, balance FROM accounts WHERE id = ANY($1)",
                [alice, bob, PLATFORM_BANK_ACCOUNT_ID],
            )
        )
        assert balances == {alice: 7_500, bob: 2_500, PLATFORM_BANK_ACCOUNT_ID: -10_000}
        assert await conn.fetchval("SELECT sum(balance) FROM accounts") == 0
        assert await ledger.ledger_breaches(conn) == []
    finally:
        await conn.close()


async def test_overdraft_is_refused_and_nothing_of_the_posting_remains(scratch_url: str) -> None:
    conn = await asyncpg.connect(scratch_url)
    try:
        _, alice = await _new_user(conn, "+919800000004")
        _, bob = await _new_user(conn, "+919800000005")
        await _fund(conn, alice, 1_000)
        before = await conn.fetchval("SELECT count(*) FROM transfers")
        with pytest.raises(ledger.InsufficientBalance):
            async with conn.transaction():
                # The first leg alone would be fine; together they overdraw alice.
                await ledger.post_transfers(
                    conn,
                    [
                        Transfer(alice, bob, 600, "trade", "trade", 1),
                        Transfer(alice, bob, 600, "trade", "trade", 1),
                    ],
                )
        assert await conn.fetchval("SELECT count(*) FROM transfers") == before
        assert await conn.fetchval("SELECT balance FROM accounts WHERE id = $1", alice) == 1_000
        assert await conn.fetchval("SELECT balance FROM accounts WHERE id = $1", bob) == 0
    finally:
        await conn.close()


async def test_database_refuses_to_update_delete_or_truncate_transfers(scratch_url: str) -> None:
    conn = await asyncpg.connect(scratch_url)
    try:
        _, alice = await _new_user(conn, "+919800000006")
        await _fund(conn, alice, 1_000)
        for statement in (
            "UPDATE transfers SET amount = amount + 1",
            "DELETE FROM transfers",
            "TRUNCATE transfers CASCADE",
        ):
            with pytest.raises(asyncpg.RestrictViolationError):
                await conn.execute(statement)
        assert await conn.fetchval("SELECT sum(amount) FROM transfers") == 1_000
    finally:
        await conn.close()


async def test_database_refuses_negative_user_cash_written_directly(scratch_url: str) -> None:
    conn = await asyncpg.connect(scratch_url)
    try:
        _, alice = await _new_user(conn, "+919800000007")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE accounts SET balance = -1 WHERE id = $1", alice)
    finally:
        await conn.close()


async def test_concurrent_postings_on_shared_accounts_do_not_deadlock_or_lose_money(
    scratch_url: str,
) -> None:
    pool = await asyncpg.create_pool(scratch_url, min_size=4, max_size=8)
    try:
        async with pool.acquire() as conn:
            accounts = [(await _new_user(conn, f"+91980000010{i}"))[1] for i in range(4)]
            for account in accounts:
                await _fund(conn, account, 100_000)

        async def shuffle(i: int) -> None:
            a, b = accounts[i % 4], accounts[(i + 1) % 4]
            async with pool.acquire() as conn, conn.transaction():
                # Touch the pair in opposite orders from neighbouring tasks.
                pair = [
                    Transfer(a, b, 10, "trade", "trade", i),
                    Transfer(b, a, 3, "trade", "trade", i),
                ]
                await ledger.post_transfers(conn, pair if i % 2 else pair[::-1])

        await asyncio.gather(*(shuffle(i) for i in range(200)))
        async with pool.acquire() as conn:
            assert (
                await conn.fetchval(
                    "SELECT sum(balance) FROM accounts WHERE id = ANY($1)", accounts
                )
                == 400_000
            )
            assert await ledger.ledger_breaches(conn) == []
    finally:
        await pool.close()


async def test_audit_cli_passes_on_a_clean_ledger_and_names_each_breach(scratch_url: str) -> None:
    conn = await asyncpg.connect(scratch_url)
    try:
        _, alice = await _new_user(conn, "+919800000008")
        _, bob = await _new_user(conn, "+919800000009")
        await _fund(conn, alice, 5_000)
        async with conn.transaction():
            await ledger.post_transfers(
                conn, [Transfer(PLATFORM_BONUS_ACCOUNT_ID, bob, 1_500, "signup_bonus", "user", 2)]
            )
        clean = _audit(scratch_url)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert "all invariants hold" in clean.stdout

        # Corrupt the copy: a balance drifts from its transfers (breaks invariants 1 and 2).
        await conn.execute("UPDATE accounts SET balance = balance + 1 WHERE id = $1", alice)
        drifted = _audit(scratch_url)
        assert drifted.returncode == 1
        assert "BREACH 1-balances-sum-to-zero" in drifted.stdout
        assert f"account {alice} (user_cash) balance 5001 vs transfers 5000" in drifted.stdout
        await conn.execute("UPDATE accounts SET balance = balance - 1 WHERE id = $1", alice)

        # A superuser switches off the append-only guard and rewrites history.
        await conn.execute("ALTER TABLE transfers DISABLE TRIGGER transfers_append_only")
        await conn.execute("UPDATE transfers SET amount = amount + 7 WHERE kind = 'deposit'")
        rewritten = _audit(scratch_url)
        assert rewritten.returncode == 1
        assert "BREACH append-only" in rewritten.stdout
        assert "BREACH 2-balance-equals-transfers" in rewritten.stdout

        # An escrow that does not back its contracts (invariant 4).
        market_id = await conn.fetchval(
            "INSERT INTO markets (title, closes_at) VALUES ('Test market', now() + interval '1 day') RETURNING id"
        )
        user_id = await conn.fetchval("SELECT user_id FROM accounts WHERE id = $1", alice)
        await conn.execute(
            "INSERT INTO positions (user_id, market_id, yes_quantity, no_quantity) VALUES ($1, $2, 3, 3)",
            user_id,
            market_id,
        )
        unbacked = _audit(scratch_url)
        assert unbacked.returncode == 1
        assert f"market {market_id} (open) escrow 0, YES 3, NO 3" in unbacked.stdout

        # A transfer into an account that does not exist (transfers carry no foreign key).
        await conn.execute(
            "INSERT INTO transfers (debit_account_id, credit_account_id, amount, kind, ref_type, ref_id) "
            "VALUES ($1, 987654, 5, 'trade', 'trade', 1)",
            alice,
        )
        dangling = _audit(scratch_url)
        assert dangling.returncode == 1
        assert (
            "BREACH 2-transfers-name-accounts: 1 transfer(s) name an unknown account: transfer"
            in dangling.stdout
        )
        assert f"({alice} -> 987654)" in dangling.stdout
    finally:
        await conn.close()
