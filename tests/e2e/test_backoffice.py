"""SPEC §12 admin operations through HTTP: suspension, the users search and a user's
page, the ledger browser, the exchange's figures."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import httpx
from litestar import Litestar

from probo.services import services_of
from tests.conftest import ADMIN_PHONE, assert_error, bearer, last_otp, login, new_phone
from tests.e2e.test_kyc import kyc_body, submit
from tests.e2e.test_realtime import feed
from tests.e2e.test_withdrawals import verified_trader, withdraw
from tests.trading import Trader, create_market, engine_differences, funded_trader, live_audit


async def verify(
    client: httpx.AsyncClient, app: Litestar, outbox: Path, phone: str
) -> httpx.Response:
    """A login of `phone` up to /auth/verify with the right code (the cooldown lifted)."""
    await services_of(app).redis.delete(
        services_of(app).settings.redis_key_prefix + f"otp-cooldown:{phone}"
    )
    response = await client.post("/api/v1/auth/otp", json={"phone": phone})
    assert response.status_code == 202, response.text
    response = await client.post(
        "/api/v1/auth/verify", json={"phone": phone, "otp": last_otp(outbox, phone)}
    )
    client.cookies.clear()
    return response


async def admin_post(client: httpx.AsyncClient, admin: dict[str, str], path: str) -> httpx.Response:
    return await client.post(f"/api/v1/admin{path}", headers=admin)


async def admin_get(
    client: httpx.AsyncClient, admin: dict[str, str], path: str, **params: object
) -> dict:
    response = await client.get(f"/api/v1/admin{path}", headers=admin, params=params)
    assert response.status_code == 200, response.text
    return response.json()


# --- suspension ---------------------------------------------------------------------------


async def test_suspension_cancels_orders_ends_sessions_and_refuses_login_and_trading(
    client: httpx.AsyncClient,
    outbox_path: Path,
    admin: dict[str, str],
    app: Litestar,
    db: asyncpg.Pool,
) -> None:
    markets = [(await create_market(client, admin))["id"] for _ in range(2)]
    phone = new_phone()
    token, body = await login(client, outbox_path, phone)
    alice = Trader(client, token, body["user"]["id"])
    await client.post(
        "/api/v1/wallet/deposits",
        json={"amount": 20_000, "idempotency_key": uuid.uuid4().hex},
        headers=alice.headers,
    )
    bob = await funded_trader(client, outbox_path, deposit=20_000)
    # Alice holds 2 YES (a mint with bob), then rests a buy in each market and a sell.
    await alice.placed(markets[0], "yes", "buy", 2, 600)
    await bob.placed(markets[0], "no", "buy", 2, 400)
    resting = [
        await alice.placed(markets[0], "yes", "buy", 5, 300),
        await alice.placed(markets[1], "no", "buy", 4, 250),
        await alice.placed(markets[0], "yes", "sell", 2, 900),
    ]
    bobs = await bob.placed(markets[1], "yes", "buy", 1, 100)
    assert (await alice.wallet())["locked"] == 5 * 300 + 4 * 250

    async with feed(client, f"?token={alice.token}") as live:
        await live.send(op="subscribe", channel="user")
        await live.wait_for(lambda m: m["type"] == "subscribed")
        response = await admin_post(client, admin, f"/users/{alice.id}/suspend")
        assert response.status_code == 200, response.text
        view = response.json()
        assert (view["id"], view["suspended"], view["locked"]) == (alice.id, True, 0)
        assert view["suspended_at"] is not None
        ended = await live.wait_for(lambda m: m["type"] == "error")
        assert (ended["code"], ended["channel"]) == ("unauthorized", "user")

    # Every open order canceled, in both markets; nothing of bob's.
    for order in resting:
        status = await db.fetchval("SELECT status FROM orders WHERE id = $1", order["id"])
        assert status == "canceled"
    assert await db.fetchval("SELECT status FROM orders WHERE id = $1", bobs["id"]) == "open"
    book = (await client.get(f"/api/v1/markets/{markets[0]}/orderbook")).json()
    assert book["yes"] == [] and book["no"] == []
    assert services_of(app).engine.exchange.locked_cash(alice.id) == 0
    detail = await admin_get(client, admin, f"/users/{alice.id}")
    assert detail["open_orders"] == [] and detail["locked"] == 0
    assert detail["balance"] == 1500 + 20_000 - 2 * 600
    held = {p["market_id"]: p["yes_quantity"] for p in detail["positions"] if p["yes_quantity"]}
    assert held == {markets[0]: 2}  # holdings stay

    # Trading and everything else refused: the old token, and a token no one revoked.
    assert_error(await alice.order(markets[0], "yes", "buy", 1, 500), 403, "suspended")
    assert_error(await client.get("/api/v1/me", headers=alice.headers), 403, "suspended")
    unrevoked, _ = services_of(app).auth.tokens.issue(alice.id, "user")
    assert_error(
        await Trader(client, unrevoked, alice.id).order(markets[0], "yes", "buy", 1, 500),
        403,
        "suspended",
    )
    async with feed(client, f"?token={unrevoked}") as live:
        await live.send(op="subscribe", channel="user")
        refused = await live.wait_for(lambda m: m["type"] == "error")
        assert refused["code"] == "unauthorized"
    # Login: the code is checked first, then the suspension.
    await services_of(app).redis.delete(
        services_of(app).settings.redis_key_prefix + f"otp-cooldown:{phone}"
    )
    assert (await client.post("/api/v1/auth/otp", json={"phone": phone})).status_code == 202
    wrong_code = "000000" if last_otp(outbox_path, phone) != "000000" else "111111"
    wrong = await client.post("/api/v1/auth/verify", json={"phone": phone, "otp": wrong_code})
    assert_error(wrong, 401, "otp_invalid")
    assert_error(await verify(client, app, outbox_path, phone), 403, "suspended")
    # Suspending again is harmless.
    again = await admin_post(client, admin, f"/users/{alice.id}/suspend")
    assert again.status_code == 200 and again.json()["suspended"] is True

    # Lifted: login and trading work again.
    response = await admin_post(client, admin, f"/users/{alice.id}/unsuspend")
    assert response.status_code == 200, response.text
    assert (response.json()["suspended"], response.json()["suspended_at"]) == (False, None)
    response = await verify(client, app, outbox_path, phone)
    assert response.status_code == 200, response.text
    alice = Trader(client, response.json()["token"], alice.id)
    await alice.placed(markets[0], "yes", "buy", 1, 300)
    assert_error(await client.get("/api/v1/me", headers=bearer(token)), 401, "unauthorized")

    assert await engine_differences(app, db) == []
    assert (await live_audit(client, admin))["breaches"] == []


async def test_admins_cannot_be_suspended_and_users_cannot_suspend(
    client: httpx.AsyncClient,
    outbox_path: Path,
    admin: dict[str, str],
    admin_login: tuple[str, dict],
) -> None:
    admin_id = admin_login[1]["user"]["id"]
    assert_error(
        await admin_post(client, admin, f"/users/{admin_id}/suspend"), 409, "cannot_suspend_admin"
    )
    assert (await client.get("/api/v1/me", headers=admin)).status_code == 200
    assert_error(await admin_post(client, admin, "/users/987654321987/suspend"), 404, "not_found")
    assert_error(await admin_post(client, admin, "/users/987654321987/unsuspend"), 404, "not_found")
    assert_error(await admin_post(client, admin, "/users/0/suspend"), 400, "validation_error")
    token, body = await login(client, outbox_path)
    for path in (f"/users/{body['user']['id']}/suspend", f"/users/{admin_id}/unsuspend"):
        assert_error(await admin_post(client, bearer(token), path), 403, "forbidden")
    for path in ("/users", f"/users/{admin_id}", "/transfers", "/stats"):
        response = await client.get(f"/api/v1/admin{path}", headers=bearer(token))
        assert_error(response, 403, "forbidden")
        assert_error(await client.get(f"/api/v1/admin{path}"), 401, "unauthorized")


# --- users --------------------------------------------------------------------------------


async def test_users_are_found_by_id_phone_or_display_name(
    client: httpx.AsyncClient, outbox_path: Path, admin: dict[str, str]
) -> None:
    tag = uuid.uuid4().hex[:6]
    found = []
    for i in range(3):
        phone = new_phone()
        token, body = await login(client, outbox_path, phone)
        name = f"Srch_{tag}_{i}"
        response = await client.patch(
            "/api/v1/me", json={"display_name": name}, headers=bearer(token)
        )
        assert response.status_code == 200, response.text
        found.append((body["user"]["id"], phone, name))
    user_id, phone, name = found[1]

    by_id = (await admin_get(client, admin, "/users", q=str(user_id)))["items"]
    assert user_id in [u["id"] for u in by_id]
    [item] = [u for u in by_id if u["id"] == user_id]
    assert item == {
        "id": user_id,
        "phone": phone,
        "display_name": name,
        "role": "user",
        "kyc_status": "NONE",
        "balance": 1500,
        "locked": 0,
        "suspended": False,
        "created_at": item["created_at"],
        "suspended_at": None,
    }
    for q in (phone, phone[3:], phone[:9]):  # E.164, the bare 10 digits, a prefix
        assert user_id in [
            u["id"] for u in (await admin_get(client, admin, "/users", q=q))["items"]
        ], q
    # Display names: case-insensitive prefix; `_` is a character, not a wildcard.
    named = await admin_get(client, admin, "/users", q=f"srch_{tag}".upper())
    assert [u["id"] for u in named["items"]] == [f[0] for f in reversed(found)]
    assert (await admin_get(client, admin, "/users", q=name.lower()))["items"][0]["id"] == user_id
    assert (await admin_get(client, admin, "/users", q=f"Srch{tag}"))["items"] == []
    assert (await admin_get(client, admin, "/users", q="no such %"))["items"] == []
    # Paged, newest first: each user exactly once.
    seen, cursor = [], None
    while True:
        params = {"q": f"srch_{tag}", "limit": 2} | ({"cursor": cursor} if cursor else {})
        got = await admin_get(client, admin, "/users", **params)
        seen += [u["id"] for u in got["items"]]
        if (cursor := got["next_cursor"]) is None:
            break
    assert seen == [f[0] for f in reversed(found)]
    everyone = await admin_get(client, admin, "/users", limit=3)
    ids = [u["id"] for u in everyone["items"]]
    assert ids == sorted(ids, reverse=True) and everyone["next_cursor"] is not None
    response = await client.get("/api/v1/admin/users", headers=admin, params={"limit": 201})
    assert_error(response, 400, "validation_error")


async def test_a_users_page_shows_positions_open_orders_and_recent_transactions(
    client: httpx.AsyncClient,
    outbox_path: Path,
    admin: dict[str, str],
    app: Litestar,
    db: asyncpg.Pool,
) -> None:
    market = (await create_market(client, admin))["id"]
    alice = await funded_trader(client, outbox_path, deposit=10_000)
    bob = await funded_trader(client, outbox_path, deposit=10_000)
    await alice.placed(market, "yes", "buy", 3, 550)
    await bob.placed(market, "no", "buy", 3, 450)
    open_order = await alice.placed(market, "yes", "buy", 2, 200)
    detail = await admin_get(client, admin, f"/users/{alice.id}")
    assert (detail["balance"], detail["locked"]) == (1500 + 10_000 - 3 * 550, 400)
    assert [o["id"] for o in detail["open_orders"]] == [open_order["id"]]
    [position] = detail["positions"]
    assert (position["market_id"], position["yes_quantity"], position["yes_locked"]) == (
        market,
        3,
        0,
    )
    mine = (await client.get("/api/v1/wallet/transactions", headers=alice.headers)).json()["items"]
    assert detail["recent_transactions"] == mine[:20]
    assert [t["kind"] for t in detail["recent_transactions"]] == [
        "trade",
        "deposit",
        "signup_bonus",
    ]
    assert_error(
        await client.get("/api/v1/admin/users/987654321987", headers=admin), 404, "not_found"
    )
    await client.delete(f"/api/v1/orders/{open_order['id']}", headers=alice.headers)
    assert await engine_differences(app, db) == []


# --- the ledger browser -------------------------------------------------------------------


async def all_pages(
    client: httpx.AsyncClient, admin: dict[str, str], limit: int, **filters: object
) -> list[dict]:
    items, cursor = [], None
    while True:
        params = {**filters, "limit": limit} | ({"cursor": cursor} if cursor else {})
        got = await admin_get(client, admin, "/transfers", **params)
        assert len(got["items"]) <= limit
        items += got["items"]
        if (cursor := got["next_cursor"]) is None:
            return items


async def test_the_ledger_browser_filters_by_kind_user_and_market_and_pages_once(
    client: httpx.AsyncClient,
    outbox_path: Path,
    admin: dict[str, str],
    app: Litestar,
    db: asyncpg.Pool,
) -> None:
    market = (await create_market(client, admin, settlement_fee_bps=500))["id"]
    alice = await funded_trader(client, outbox_path, deposit=10_000)
    bob = await funded_trader(client, outbox_path, deposit=10_000)
    carol = await funded_trader(client, outbox_path, deposit=10_000)
    await alice.placed(market, "yes", "buy", 4, 600)  # mint with bob
    await bob.placed(market, "no", "buy", 4, 400)
    await carol.placed(market, "yes", "buy", 1, 650)  # transfer: alice sells to carol
    await alice.placed(market, "yes", "sell", 1, 650)
    response = await client.post(
        f"/api/v1/admin/markets/{market}/resolve", json={"outcome": "yes"}, headers=admin
    )
    assert response.status_code == 200, response.text

    # A user's: every transfer in or out of their cash, each once, newest first.
    account = await db.fetchval("SELECT id FROM accounts WHERE user_id = $1", alice.id)
    expected = await db.fetch(
        "SELECT id FROM transfers WHERE debit_account_id = $1 OR credit_account_id = $1 ORDER BY id DESC",
        account,
    )
    for limit in (1, 2, 50):
        paged = await all_pages(client, admin, limit, user_id=alice.id)
        assert [t["id"] for t in paged] == [r["id"] for r in expected]
    kinds = [t["kind"] for t in paged]
    assert sorted(set(kinds)) == ["deposit", "fee", "payout", "signup_bonus", "trade"]
    [deposit] = await all_pages(client, admin, 50, user_id=alice.id, kind="deposit")
    assert deposit["amount"] == 10_000 and deposit["ref"].startswith("deposit:")
    assert deposit["credit_account"] == {
        "kind": "user_cash",
        "user_id": alice.id,
        "market_id": None,
    }
    assert deposit["debit_account"]["kind"] == "platform_bank"
    assert set(deposit) == {"id", "debit_account_id", "credit_account_id", "amount", "kind", "ref",
                            "created_at", "debit_account", "credit_account"}  # fmt: skip

    # A market's: into and out of its escrow, and its fees.
    escrow = await db.fetchval("SELECT id FROM accounts WHERE market_id = $1", market)
    expected = await db.fetch(
        "SELECT id FROM transfers WHERE debit_account_id = $1 OR credit_account_id = $1 "
        "OR (ref_type = 'market' AND ref_id = $2) ORDER BY id DESC",
        escrow,
        market,
    )
    for limit in (1, 3):
        paged = await all_pages(client, admin, limit, market_id=market)
        assert [t["id"] for t in paged] == [r["id"] for r in expected]
    assert sorted(t["kind"] for t in paged) == ["fee", "fee", "payout", "payout", "trade", "trade"]
    fees = await all_pages(client, admin, 1, market_id=market, kind="fee")
    assert sorted(f["amount"] for f in fees) == [50, 150]  # 5% of carol's 1000, alice's 3000
    assert all(f["credit_account"]["kind"] == "platform_fees" for f in fees)
    both = await all_pages(client, admin, 1, market_id=market, user_id=alice.id)
    assert sorted(t["kind"] for t in both) == ["fee", "payout", "trade"]
    assert await all_pages(client, admin, 5, market_id=market, kind="deposit") == []
    assert await all_pages(client, admin, 5, market_id=987654321987) == []
    assert await all_pages(client, admin, 5, user_id=987654321987) == []

    # By kind alone, across users: newest first, every record once.
    newest_trades = (await admin_get(client, admin, "/transfers", kind="trade", limit=3))["items"]
    expected = await db.fetch(
        "SELECT id FROM transfers WHERE kind = 'trade' ORDER BY id DESC LIMIT 3"
    )
    assert [t["id"] for t in newest_trades] == [r["id"] for r in expected]
    expected = await db.fetch("SELECT id FROM transfers WHERE kind = 'payout' ORDER BY id DESC")
    assert [t["id"] for t in await all_pages(client, admin, 7, kind="payout")] == [
        r["id"] for r in expected
    ]
    first = (await admin_get(client, admin, "/transfers", limit=1))["items"][0]
    assert first["id"] == await db.fetchval("SELECT max(id) FROM transfers")
    for bad in (
        {"kind": "gift"},
        {"user_id": 0},
        {"market_id": "x"},
        {"cursor": "!!"},
        {"limit": 0},
    ):
        response = await client.get("/api/v1/admin/transfers", headers=admin, params=bad)
        assert_error(response, 400, "validation_error")
    assert await engine_differences(app, db) == []
    assert (await live_audit(client, admin))["breaches"] == []


async def test_the_ledger_browsers_filters_use_indexes(db: asyncpg.Pool) -> None:
    """No sequential scan of transfers for a filter, whatever the table's size."""
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        for where, index in (
            ("kind = 'deposit' AND kind <> 'trade'", "transfers_kind_idx"),
            ("debit_account_id = 1000", "transfers_debit_idx"),
            ("credit_account_id = 1000", "transfers_credit_idx"),
            ("ref_type = 'market' AND ref_id = 5", "transfers_market_ref_idx"),
        ):
            rows = await conn.fetch(f"EXPLAIN SELECT * FROM transfers WHERE {where}")
            plan = "\n".join(r[0] for r in rows)
            assert "Seq Scan" not in plan and index in plan, (where, plan)


# --- the figures --------------------------------------------------------------------------


async def test_stats_count_what_happened(
    client: httpx.AsyncClient,
    outbox_path: Path,
    admin: dict[str, str],
    app: Litestar,
    db: asyncpg.Pool,
) -> None:
    before = await admin_get(client, admin, "/stats")
    assert set(before) == {"users", "users_24h", "deposits_24h", "withdrawals_24h", "volume_24h",
                           "fees_total", "open_interest", "open_markets", "pending_kyc",
                           "pending_withdrawals"}  # fmt: skip

    market = (await create_market(client, admin, settlement_fee_bps=1000))["id"]
    alice = await verified_trader(client, outbox_path, admin, 3_000_000)  # a user, a deposit
    bob = await funded_trader(client, outbox_path, deposit=5_000)  # a user, a deposit
    await alice.placed(market, "yes", "buy", 4, 600)
    await bob.placed(market, "no", "buy", 4, 400)  # 4 minted
    await bob.placed(market, "no", "sell", 1, 450)
    await alice.placed(market, "no", "buy", 1, 450)  # 1 moves from bob to alice
    assert (await withdraw(alice, 2_000)).status_code == 201  # paid out
    assert (await withdraw(alice, 1_500_000)).status_code == 201  # over the review line: pending
    carol, _ = await login(client, outbox_path)  # a user, KYC pending
    assert (await submit(client, bearer(carol), kyc_body())).status_code == 201

    during = await admin_get(client, admin, "/stats")
    assert {k: during[k] - before[k] for k in during} == {
        "users": 3,
        "users_24h": 3,
        "deposits_24h": 3_005_000,
        "withdrawals_24h": 1_502_000,
        "volume_24h": 5,
        "fees_total": 0,
        "open_interest": 4,
        "open_markets": 1,
        "pending_kyc": 1,
        "pending_withdrawals": 1,
    }
    response = await client.post(
        f"/api/v1/admin/markets/{market}/resolve", json={"outcome": "no"}, headers=admin
    )
    assert response.status_code == 200, response.text
    after = await admin_get(client, admin, "/stats")
    # NO pays: bob's 3 and alice's 1, 10% of each 1000 taken.
    assert after["fees_total"] - during["fees_total"] == 400
    assert after["open_interest"] - during["open_interest"] == -4
    assert after["open_markets"] - during["open_markets"] == -1
    assert after["fees_total"] == await db.fetchval("SELECT balance FROM accounts WHERE id = 3")
    assert await engine_differences(app, db) == []
    assert (await live_audit(client, admin))["breaches"] == []
    assert ADMIN_PHONE  # the admin's own user counts among `users`


async def test_a_reload_never_undoes_a_suspension_announced_while_it_reads(
    client: httpx.AsyncClient, app: Litestar
) -> None:
    revocations = services_of(app).auth.revocations
    user_id = 10**15  # no such user: Postgres knows no suspension of it
    reload = asyncio.create_task(revocations.load())
    await asyncio.sleep(0)  # the reload is reading Postgres
    await revocations.announce_suspension(user_id, True)
    await reload
    assert revocations.is_suspended(user_id)
    await revocations.announce_suspension(user_id, False)
    await revocations.load()
    assert not revocations.is_suspended(user_id)


async def test_the_users_search_uses_indexes(db: asyncpg.Pool) -> None:
    """Prefix ranges on the pattern indexes, found even by a generic plan."""
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        for where, index in (
            ("phone ~>=~ $1 AND phone ~<~ $2", "users_phone_pattern_idx"),
            (
                "lower(display_name) ~>=~ $1 AND lower(display_name) ~<~ $2",
                "users_display_name_idx",
            ),
        ):
            statement = await conn.prepare(f"EXPLAIN SELECT id FROM users WHERE {where}")
            plan = "\n".join(r[0] for r in await statement.fetch("+9198", "+9199"))
            assert "Seq Scan" not in plan and index in plan, (where, plan)
