"""ReferralService against real Postgres and the real engine (SPEC §4, §10): a valid
code of someone else, applied while the user is still new and not yet referred, credits
the referrer the referral bonus once, even when submissions race; the ledger and the
engine agree afterwards."""

from __future__ import annotations

import asyncio

import pytest

from probo.web import ApiError
from tests.services import (
    Services,
    balance,
    ledger_problems,
    new_market,
    place,
    refused,
    sign_up,
    warm_pool,
)

SIGNUP_BONUS = 1500
REFERRAL_BONUS = 1000


async def code_of(services: Services, user_id: int) -> str:
    return (await services.referral.summary(user_id)).code


async def is_new(services: Services, user_id: int) -> bool:
    return (await services.auth.me(user_id)).is_new


async def test_a_valid_code_credits_the_referrer_the_bonus(services: Services) -> None:
    referrer, referred = await sign_up(services), await sign_up(services)
    code = await code_of(services, referrer)
    applied = await services.referral.apply(referred, f"  {code.lower()} ")  # any case
    assert (applied.referrer_id, applied.code) == (referrer, code)
    assert await balance(services, referrer) == SIGNUP_BONUS + REFERRAL_BONUS
    assert services.engine.exchange.cash(referrer) == SIGNUP_BONUS + REFERRAL_BONUS
    assert await balance(services, referred) == SIGNUP_BONUS  # the referrer is rewarded
    [latest, *_] = (await services.wallet.transactions(referrer, 50, None)).items
    assert (latest.kind, latest.amount, latest.ref) == (
        "referral_bonus",
        REFERRAL_BONUS,
        f"user:{referred}",
    )
    assert not await is_new(services, referred)
    assert await is_new(services, referrer)  # referring someone changes nothing of one's own
    summary = await services.referral.summary(referrer)
    assert [r.user_id for r in summary.referrals] == [referred]
    assert (summary.total_earned, summary.referral_count) == (REFERRAL_BONUS, 1)
    assert await ledger_problems(services) == []


@pytest.mark.parametrize("code", ["", "ABC", "ABCDEFGHJ", "ABCDEFG0", "ABCDEFGI", "ZZZZZZZZ"])
async def test_an_unknown_or_malformed_code_is_invalid(services: Services, code: str) -> None:
    user = await sign_up(services)
    error = await refused(services.referral.apply(user, code))
    assert (error.status_code, error.code) == (422, "invalid_referral_code")
    assert await is_new(services, user)  # a typo costs nothing: a valid code still applies
    referrer = await sign_up(services)
    await services.referral.apply(user, await code_of(services, referrer))
    assert await balance(services, referrer) == SIGNUP_BONUS + REFERRAL_BONUS


async def test_ones_own_code_is_refused(services: Services) -> None:
    user = await sign_up(services)
    error = await refused(services.referral.apply(user, await code_of(services, user)))
    assert (error.status_code, error.code) == (422, "self_referral")
    assert await balance(services, user) == SIGNUP_BONUS
    assert await is_new(services, user)


async def test_a_code_applies_once(services: Services) -> None:
    first, second, user = [await sign_up(services) for _ in range(3)]
    await services.referral.apply(user, await code_of(services, first))
    for code in (await code_of(services, first), await code_of(services, second)):
        error = await refused(services.referral.apply(user, code))
        assert (error.status_code, error.code) == (409, "already_referred")
    assert await balance(services, first) == SIGNUP_BONUS + REFERRAL_BONUS
    assert await balance(services, second) == SIGNUP_BONUS


async def test_only_a_new_user_can_apply_a_code(services: Services) -> None:
    referrer, trader = await sign_up(services), await sign_up(services)
    market = await new_market(services)
    await place(services, trader, market, "yes", "buy", 1, 500)  # a first order
    assert not await is_new(services, trader)
    error = await refused(services.referral.apply(trader, await code_of(services, referrer)))
    assert (error.status_code, error.code) == (409, "not_new")
    assert await balance(services, referrer) == SIGNUP_BONUS


async def test_two_users_cannot_refer_each_other(services: Services) -> None:
    first, second = await sign_up(services), await sign_up(services)
    await services.referral.apply(first, await code_of(services, second))
    assert await is_new(services, second)
    error = await refused(services.referral.apply(second, await code_of(services, first)))
    assert (error.status_code, error.code) == (422, "circular_referral")
    assert await balance(services, first) == SIGNUP_BONUS
    assert await balance(services, second) == SIGNUP_BONUS + REFERRAL_BONUS


async def test_concurrent_submissions_of_one_code_credit_once(services: Services) -> None:
    referrer, user = await sign_up(services), await sign_up(services)
    code = await code_of(services, referrer)
    await warm_pool(services)
    results = await asyncio.gather(
        *(services.referral.apply(user, code) for _ in range(10)), return_exceptions=True
    )
    applied = [r for r in results if not isinstance(r, BaseException)]
    assert len(applied) == 1, results
    assert all(
        isinstance(r, ApiError) and r.code == "already_referred"
        for r in results
        if isinstance(r, BaseException)
    ), results
    assert await balance(services, referrer) == SIGNUP_BONUS + REFERRAL_BONUS
    assert (await services.referral.summary(referrer)).total_earned == REFERRAL_BONUS
    assert await ledger_problems(services) == []


async def test_concurrent_submissions_of_different_codes_credit_one_referrer(
    services: Services,
) -> None:
    referrers = [await sign_up(services) for _ in range(5)]
    user = await sign_up(services)
    codes = [await code_of(services, referrer) for referrer in referrers]
    await warm_pool(services)
    results = await asyncio.gather(
        *(services.referral.apply(user, code) for code in codes), return_exceptions=True
    )
    [applied] = [r for r in results if not isinstance(r, BaseException)]
    balances = {referrer: await balance(services, referrer) for referrer in referrers}
    assert balances == {
        referrer: SIGNUP_BONUS + (REFERRAL_BONUS if referrer == applied.referrer_id else 0)
        for referrer in referrers
    }
    assert await ledger_problems(services) == []


async def test_one_referrer_credited_for_each_of_many_referred_at_once(services: Services) -> None:
    referrer = await sign_up(services)
    users = [await sign_up(services) for _ in range(8)]
    code = await code_of(services, referrer)
    await warm_pool(services)
    await asyncio.gather(*(services.referral.apply(user, code) for user in users))
    assert await balance(services, referrer) == SIGNUP_BONUS + 8 * REFERRAL_BONUS
    summary = await services.referral.summary(referrer)
    assert sorted(r.user_id for r in summary.referrals) == sorted(users)
    assert summary.total_earned == 8 * REFERRAL_BONUS
    assert await ledger_problems(services) == []
