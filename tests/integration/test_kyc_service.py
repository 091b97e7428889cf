"""KycService against real Postgres (SPEC §4, §10): formats checked and normalised, one
pending request at a time, a new one after REJECTED, PAN and account masked for the
user and whole for the admin, and the admin's decisions."""

from __future__ import annotations

import asyncio

import pytest

from probo.kyc import kyc_status_of
from probo.web import ApiError, decode_cursor
from tests.services import Services, admin_id, kyc_submission, new_pan, refused, sign_up, warm_pool


async def status_of(services: Services, user_id: int) -> str:
    async with services.pool.acquire() as conn:
        return await kyc_status_of(conn, user_id)


@pytest.mark.parametrize(
    "field",
    [
        {"pan": "ABCD12345F"},  # four letters
        {"pan": "ABCDE1234"},  # no last letter
        {"pan": "ABCDE12345"},
        {"ifsc": "HDFC1001234"},  # fifth character not 0
        {"ifsc": "HDF00001234"},
        {"ifsc": "HDFC000123"},  # ten characters
        {"bank_account": "12345678"},  # 8 digits
        {"bank_account": "1234567890123456789"},  # 19 digits
        {"bank_account": "12345678901A"},
        {"name": "4sha"},
        {"name": ""},
    ],
    ids=lambda field: "-".join(f"{k}={v}" for k, v in field.items()),
)
async def test_a_malformed_submission_is_refused_and_nothing_is_pending(
    services: Services, field: dict[str, str]
) -> None:
    user = await sign_up(services)
    error = await refused(services.kyc.submit(user, kyc_submission(**field)))
    assert (error.status_code, error.code) == (422, "validation_error")
    assert (await services.kyc.latest(user)).status == "NONE"
    assert await status_of(services, user) == "NONE"


async def test_a_submission_is_pending_normalised_and_masked_for_the_user(
    services: Services,
) -> None:
    user = await sign_up(services)
    pan = new_pan()
    view, created = await services.kyc.submit(
        user,
        kyc_submission(
            pan=f" {pan.lower()} ", bank_account="1234 5678 9012", ifsc="hdfc0001234",
            name="  Asha   Verma ",
        ),
    )  # fmt: skip
    assert created
    assert (view.status, view.name, view.ifsc) == ("PENDING", "Asha Verma", "HDFC0001234")
    assert (view.pan, view.bank_account) == ("XXXXXX" + pan[-4:], "XXXXXXXX9012")
    assert await services.kyc.latest(user) == view
    assert await status_of(services, user) == "PENDING"
    # The admin sees them whole, as stored.
    queue = await services.kyc.queue("PENDING", 200, None)
    [mine] = [item for item in queue.items if item.user_id == user]
    assert (mine.pan, mine.bank_account, mine.ifsc, mine.name) == (
        pan,
        "123456789012",
        "HDFC0001234",
        "Asha Verma",
    )


async def test_no_request_is_status_none(services: Services) -> None:
    user = await sign_up(services)
    view = await services.kyc.latest(user)
    assert (view.status, view.id, view.pan) == ("NONE", None, None)


async def test_one_pending_request_at_a_time(services: Services) -> None:
    user = await sign_up(services)
    submission = kyc_submission()
    first, _ = await services.kyc.submit(user, submission)
    again, created = await services.kyc.submit(user, submission)
    assert (again, created) == (first, False)  # the same request again: the original
    error = await refused(services.kyc.submit(user, kyc_submission()))
    assert (error.status_code, error.code) == (409, "kyc_pending")
    assert (await services.kyc.latest(user)).id == first.id


async def test_concurrent_different_submissions_create_one_request(services: Services) -> None:
    user = await sign_up(services)
    await warm_pool(services)
    results = await asyncio.gather(
        *(services.kyc.submit(user, kyc_submission()) for _ in range(10)), return_exceptions=True
    )
    created = [r for r in results if isinstance(r, tuple) and r[1]]
    assert len(created) == 1, results
    refusals = [r for r in results if not isinstance(r, tuple)]
    assert all(isinstance(r, ApiError) and r.code == "kyc_pending" for r in refusals), refusals
    queue = await services.kyc.queue(None, 200, None)
    assert [item.id for item in queue.items if item.user_id == user] == [created[0][0].id]


async def test_verification_is_final_and_decided_once(services: Services) -> None:
    user, admin = await sign_up(services), await admin_id(services)
    request, _ = await services.kyc.submit(user, kyc_submission())
    decided = await services.kyc.decide(admin, request.id, "VERIFIED", None)  # type: ignore[arg-type]
    assert (decided.id, decided.status, decided.user_id) == (request.id, "VERIFIED", user)
    assert await status_of(services, user) == "VERIFIED"
    for decision in ("VERIFIED", "REJECTED"):
        error = await refused(services.kyc.decide(admin, request.id, decision, "again"))  # type: ignore[arg-type]
        assert (error.status_code, error.code) == (409, "invalid_transition")
    error = await refused(services.kyc.submit(user, kyc_submission()))
    assert (error.status_code, error.code) == (409, "kyc_verified")
    assert await status_of(services, user) == "VERIFIED"


async def test_a_rejection_needs_a_reason_and_allows_a_new_request(services: Services) -> None:
    user, admin = await sign_up(services), await admin_id(services)
    request, _ = await services.kyc.submit(user, kyc_submission())
    for reason in (None, "   "):
        error = await refused(services.kyc.decide(admin, request.id, "REJECTED", reason))  # type: ignore[arg-type]
        assert (error.status_code, error.code) == (422, "validation_error")
    assert await status_of(services, user) == "PENDING"
    rejected = await services.kyc.decide(admin, request.id, "REJECTED", " blurred scan ")  # type: ignore[arg-type]
    assert (rejected.status, rejected.reason) == ("REJECTED", "blurred scan")
    latest = await services.kyc.latest(user)
    assert (latest.status, latest.reason) == ("REJECTED", "blurred scan")

    again, created = await services.kyc.submit(user, kyc_submission())
    assert created and again.id != request.id and again.status == "PENDING"
    assert await status_of(services, user) == "PENDING"


async def test_a_decision_on_an_unknown_request_is_not_found(services: Services) -> None:
    error = await refused(services.kyc.decide(await admin_id(services), 2**62, "VERIFIED", None))
    assert (error.status_code, error.code) == (404, "not_found")


async def test_a_pan_is_verified_for_one_account_only(services: Services) -> None:
    first, second, third = [await sign_up(services) for _ in range(3)]
    admin = await admin_id(services)
    pan = new_pan()
    first_request, _ = await services.kyc.submit(first, kyc_submission(pan=pan))
    second_request, _ = await services.kyc.submit(second, kyc_submission(pan=pan))
    await services.kyc.decide(admin, first_request.id, "VERIFIED", None)  # type: ignore[arg-type]
    error = await refused(services.kyc.decide(admin, second_request.id, "VERIFIED", None))  # type: ignore[arg-type]
    assert (error.status_code, error.code) == (409, "pan_in_use")
    assert await status_of(services, second) == "PENDING"  # still there to reject
    error = await refused(services.kyc.submit(third, kyc_submission(pan=pan)))
    assert (error.status_code, error.code) == (409, "pan_in_use")
    assert await status_of(services, third) == "NONE"


async def test_the_admin_queue_filters_by_status_newest_first_every_item_once(
    services: Services,
) -> None:
    admin = await admin_id(services)
    ids = []
    for _ in range(5):
        view, _ = await services.kyc.submit(await sign_up(services), kyc_submission())
        ids.append(view.id)
    await services.kyc.decide(admin, ids[1], "REJECTED", "mismatch")  # type: ignore[arg-type]
    await services.kyc.decide(admin, ids[3], "VERIFIED", None)  # type: ignore[arg-type]

    seen, cursor = [], None
    while True:
        page = await services.kyc.queue(None, 2, decode_cursor(cursor))
        assert len(page.items) <= 2
        seen += [item.id for item in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == sorted(set(seen), reverse=True)  # newest first, none twice
    assert set(ids) <= set(seen)
    statuses = {
        status: {item.id for item in (await services.kyc.queue(status, 200, None)).items}
        for status in ("PENDING", "VERIFIED", "REJECTED")
    }
    assert {ids[0], ids[2], ids[4]} <= statuses["PENDING"]
    assert ids[1] in statuses["REJECTED"] and ids[3] in statuses["VERIFIED"]
    for status, members in statuses.items():
        for other, others in statuses.items():
            assert other == status or not members & others
