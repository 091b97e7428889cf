"""Referral through HTTP (SPEC §4, §10): the code rules, the bonus, and concurrency."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import httpx
from litestar import Litestar

from probo.services import services_of
from tests.conftest import assert_error, bearer, login

BONUS = 1000
SIGNUP = 1500


async def new_user(client: httpx.AsyncClient, outbox_path: Path) -> tuple[dict[str, str], dict]:
    token, body = await login(client, outbox_path)
    return bearer(token), body["user"]


async def apply(client: httpx.AsyncClient, headers: dict[str, str], code: object) -> httpx.Response:
    return await client.post("/api/v1/referrals", json={"code": code}, headers=headers)


async def balance(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    wallet = await client.get("/api/v1/wallet", headers=headers)
    assert wallet.status_code == 200
    return wallet.json()["balance"]


async def is_new(client: httpx.AsyncClient, headers: dict[str, str]) -> bool:
    return (await client.get("/api/v1/me", headers=headers)).json()["is_new"]


async def referral_transfers(db: asyncpg.Pool, referred_user_id: int) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT amount FROM transfers WHERE kind = 'referral_bonus' AND ref_type = 'user' AND ref_id = $1",
        referred_user_id,
    )


async def test_valid_code_in_lowercase_credits_the_referrer_exactly_the_bonus(
    client: httpx.AsyncClient, outbox_path: Path, app: Litestar, db: asyncpg.Pool
) -> None:
    referrer, referrer_me = await new_user(client, outbox_path)
    referred, referred_me = await new_user(client, outbox_path)
    assert await is_new(client, referred) is True

    response = await apply(client, referred, f"  {referrer_me['referral_code'].lower()} ")
    assert response.status_code == 200, response.text
    applied = response.json()
    assert applied["referrer_id"] == referrer_me["id"]
    assert applied["code"] == referrer_me["referral_code"]

    wallet = (await client.get("/api/v1/wallet", headers=referrer)).json()
    assert wallet == {
        "currency": "INR",
        "balance": SIGNUP + BONUS,
        "locked": 0,
        "available": SIGNUP + BONUS,
    }
    history = (await client.get("/api/v1/wallet/transactions", headers=referrer)).json()["items"]
    assert [(t["kind"], t["amount"], t["ref"]) for t in history] == [
        ("referral_bonus", BONUS, f"user:{referred_me['id']}"),
        ("signup_bonus", SIGNUP, f"user:{referrer_me['id']}"),
    ]
    assert services_of(app).engine.exchange.cash(referrer_me["id"]) == SIGNUP + BONUS
    # The referred user gets nothing but stops being new.
    assert await is_new(client, referred) is False
    assert await balance(client, referred) == SIGNUP
    assert services_of(app).engine.exchange.cash(referred_me["id"]) == SIGNUP
    assert [r["amount"] for r in await referral_transfers(db, referred_me["id"])] == [BONUS]


async def test_referrals_summary_lists_code_referrals_and_total_earned(
    client: httpx.AsyncClient, outbox_path: Path
) -> None:
    referrer, referrer_me = await new_user(client, outbox_path)
    empty = await client.get("/api/v1/referrals", headers=referrer)
    assert empty.status_code == 200
    body = empty.json()
    assert {"code", "referrals", "total_earned"} <= set(body)
    assert (body["code"], body["referrals"], body["total_earned"]) == (
        referrer_me["referral_code"],
        [],
        0,
    )

    referred_ids = []
    for _ in range(2):
        referred, referred_me = await new_user(client, outbox_path)
        assert (await apply(client, referred, referrer_me["referral_code"])).status_code == 200
        referred_ids.append(referred_me["id"])
    body = (await client.get("/api/v1/referrals", headers=referrer)).json()
    assert body["code"] == referrer_me["referral_code"]
    assert body["total_earned"] == 2 * BONUS
    assert [set(r) >= {"user_id", "created_at"} for r in body["referrals"]] == [True, True]
    assert [r["user_id"] for r in body["referrals"]] == referred_ids[::-1]  # newest first
    assert await balance(client, referrer) == SIGNUP + 2 * BONUS
    # The referred user's own summary is about their own code.
    referred_summary = (await client.get("/api/v1/referrals", headers=referred)).json()
    assert (referred_summary["referrals"], referred_summary["total_earned"]) == ([], 0)


async def test_own_code_is_422_self_referral(
    client: httpx.AsyncClient, outbox_path: Path, db: asyncpg.Pool
) -> None:
    user, me = await new_user(client, outbox_path)
    assert_error(await apply(client, user, me["referral_code"]), 422, "self_referral")
    assert_error(await apply(client, user, me["referral_code"].lower()), 422, "self_referral")
    assert await is_new(client, user) is True
    assert await balance(client, user) == SIGNUP
    assert await referral_transfers(db, me["id"]) == []


async def test_two_users_cannot_refer_each_other(
    client: httpx.AsyncClient, outbox_path: Path, db: asyncpg.Pool
) -> None:
    alice, alice_me = await new_user(client, outbox_path)
    bob, bob_me = await new_user(client, outbox_path)
    assert (await apply(client, alice, bob_me["referral_code"])).status_code == 200
    assert_error(await apply(client, bob, alice_me["referral_code"]), 422, "circular_referral")
    assert await balance(client, alice) == SIGNUP
    assert await balance(client, bob) == SIGNUP + 1000
    assert await is_new(client, bob) is True


async def test_unknown_or_malformed_code_is_422_invalid_referral_code(
    client: httpx.AsyncClient, outbox_path: Path, db: asyncpg.Pool
) -> None:
    user, me = await new_user(client, outbox_path)
    taken = set(await db.fetchval("SELECT array_agg(referral_code) FROM users"))
    unused = next(c for c in ("ZZZZZZZZ", "YYYYYYYY", "XXXXXXXX") if c not in taken)
    for code in (
        unused,
        "ABCDEFG",
        "ABCDEFGHJ",
        "ABCDEF0I",
        "",
        "        ",
        "ABCD-EFG",
        "ÄBCDEFGH",
    ):
        assert_error(await apply(client, user, code), 422, "invalid_referral_code")
    assert await is_new(client, user) is True
    # A bad attempt does not use up the right to apply a good code.
    referrer, referrer_me = await new_user(client, outbox_path)
    assert (await apply(client, user, referrer_me["referral_code"])).status_code == 200
    assert await balance(client, referrer) == SIGNUP + BONUS


async def test_second_application_is_409_already_referred(
    client: httpx.AsyncClient, outbox_path: Path, db: asyncpg.Pool
) -> None:
    first, first_me = await new_user(client, outbox_path)
    second, second_me = await new_user(client, outbox_path)
    referred, referred_me = await new_user(client, outbox_path)
    assert (await apply(client, referred, first_me["referral_code"])).status_code == 200
    assert_error(await apply(client, referred, first_me["referral_code"]), 409, "already_referred")
    assert_error(await apply(client, referred, second_me["referral_code"]), 409, "already_referred")
    assert await balance(client, first) == SIGNUP + BONUS
    assert await balance(client, second) == SIGNUP
    assert [r["amount"] for r in await referral_transfers(db, referred_me["id"])] == [BONUS]


async def test_a_user_who_is_no_longer_new_cannot_apply_a_code(
    client: httpx.AsyncClient, outbox_path: Path, db: asyncpg.Pool
) -> None:
    referrer, referrer_me = await new_user(client, outbox_path)
    user, me = await new_user(client, outbox_path)
    # What a first order does to the user (orders are another package's journey).
    await db.execute("UPDATE users SET is_new = false WHERE id = $1", me["id"])
    response = await apply(client, user, referrer_me["referral_code"])
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "not_new"
    assert await balance(client, referrer) == SIGNUP


async def test_referral_needs_a_session(client: httpx.AsyncClient) -> None:
    assert_error(await apply(client, {}, "ABCDEFGH"), 401, "unauthorized")
    assert_error(await client.get("/api/v1/referrals"), 401, "unauthorized")


async def test_ten_concurrent_submissions_of_the_same_code_credit_once(
    client: httpx.AsyncClient, outbox_path: Path, app: Litestar, db: asyncpg.Pool
) -> None:
    referrer, referrer_me = await new_user(client, outbox_path)
    referred, referred_me = await new_user(client, outbox_path)
    responses = await asyncio.gather(
        *(apply(client, referred, referrer_me["referral_code"]) for _ in range(10))
    )
    assert sorted(r.status_code for r in responses) == [200] + [409] * 9, [
        r.text for r in responses
    ]
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {
        "already_referred"
    }
    assert await balance(client, referrer) == SIGNUP + BONUS
    assert services_of(app).engine.exchange.cash(referrer_me["id"]) == SIGNUP + BONUS
    assert [r["amount"] for r in await referral_transfers(db, referred_me["id"])] == [BONUS]
    summary = (await client.get("/api/v1/referrals", headers=referrer)).json()
    assert ([r["user_id"] for r in summary["referrals"]], summary["total_earned"]) == (
        [referred_me["id"]],
        BONUS,
    )


async def test_ten_concurrent_submissions_of_different_codes_credit_exactly_one_referrer(
    client: httpx.AsyncClient, outbox_path: Path, app: Litestar, db: asyncpg.Pool
) -> None:
    referrers = [await new_user(client, outbox_path) for _ in range(10)]
    referred, referred_me = await new_user(client, outbox_path)
    responses = await asyncio.gather(
        *(apply(client, referred, me["referral_code"]) for _, me in referrers)
    )
    assert sorted(r.status_code for r in responses) == [200] + [409] * 9, [
        r.text for r in responses
    ]
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {
        "already_referred"
    }
    [winner] = [r.json()["referrer_id"] for r in responses if r.status_code == 200]
    for headers, me in referrers:
        expected = SIGNUP + BONUS if me["id"] == winner else SIGNUP
        assert await balance(client, headers) == expected, me["id"]
        assert services_of(app).engine.exchange.cash(me["id"]) == expected
    assert [r["amount"] for r in await referral_transfers(db, referred_me["id"])] == [BONUS]


async def test_many_users_referred_concurrently_by_one_referrer_each_credit_once(
    client: httpx.AsyncClient, outbox_path: Path, app: Litestar
) -> None:
    referrer, referrer_me = await new_user(client, outbox_path)
    referred = [await new_user(client, outbox_path) for _ in range(10)]
    responses = await asyncio.gather(
        *(apply(client, headers, referrer_me["referral_code"]) for headers, _ in referred)
    )
    assert [r.status_code for r in responses] == [200] * 10, [r.text for r in responses]
    assert await balance(client, referrer) == SIGNUP + 10 * BONUS
    assert services_of(app).engine.exchange.cash(referrer_me["id"]) == SIGNUP + 10 * BONUS
    summary = (await client.get("/api/v1/referrals", headers=referrer)).json()
    assert summary["total_earned"] == 10 * BONUS
    assert sorted(r["user_id"] for r in summary["referrals"]) == sorted(
        me["id"] for _, me in referred
    )
