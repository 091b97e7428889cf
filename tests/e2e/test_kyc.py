"""KYC through HTTP (SPEC §4, §10): submission rules, masking, the admin queue and decisions."""

from __future__ import annotations

import asyncio
import json
import random
import string
from pathlib import Path

import asyncpg
import httpx
from loguru import logger

from tests.conftest import assert_error, bearer, login

SPEC_ADMIN_KEYS = {
    "id",
    "user_id",
    "phone",
    "name",
    "pan",
    "bank_account",
    "ifsc",
    "status",
    "reason",
    "created_at",
}
NO_SUCH_KYC_ID = 2**63 - 1


def random_pan() -> str:
    letters = "".join(random.choices(string.ascii_uppercase, k=5))
    digits = "".join(random.choices(string.digits, k=4))
    return f"{letters}{digits}{random.choice(string.ascii_uppercase)}"


def random_account(length: int = 14) -> str:
    return random.choice("123456789") + "".join(random.choices(string.digits, k=length - 1))


def kyc_body(**overrides: str) -> dict[str, str]:
    body = {
        "pan": random_pan(),
        "name": "Asha Rao",
        "bank_account": random_account(),
        "ifsc": "HDFC0001234",
    }
    body.update(overrides)
    return body


def masked(value: str) -> str:
    return "X" * (len(value) - 4) + value[-4:]


async def new_user(client: httpx.AsyncClient, outbox_path: Path) -> tuple[dict[str, str], dict]:
    token, body = await login(client, outbox_path)
    return bearer(token), body["user"]


async def submit(client: httpx.AsyncClient, headers: dict[str, str], body: dict) -> httpx.Response:
    return await client.post("/api/v1/kyc", json=body, headers=headers)


async def decide(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    kyc_id: int,
    decision: str,
    reason: str | None = None,
) -> httpx.Response:
    payload: dict[str, str] = {"decision": decision}
    if reason is not None:
        payload["reason"] = reason
    return await client.post(f"/api/v1/admin/kyc/{kyc_id}/decision", json=payload, headers=admin)


async def kyc_status(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    me = await client.get("/api/v1/me", headers=headers)
    assert me.status_code == 200
    return me.json()["kyc_status"]


# --- submission validation ------------------------------------------------------


async def test_malformed_pan_is_422_validation_error(
    client: httpx.AsyncClient, outbox_path: Path
) -> None:
    user, _ = await new_user(client, outbox_path)
    for pan in [
        "ABCDE1234",
        "ABCDE12345",
        "ABCD01234F",
        "12345ABCDE",
        "ABCDE 1234F",
        "ABCDE1234FF",
        "",
        "ÄBCDE1234F",
    ]:
        assert_error(await submit(client, user, kyc_body(pan=pan)), 422, "validation_error")
    assert (await client.get("/api/v1/kyc", headers=user)).json()["status"] == "NONE"


async def test_malformed_ifsc_is_422_validation_error(
    client: httpx.AsyncClient, outbox_path: Path
) -> None:
    user, _ = await new_user(client, outbox_path)
    for ifsc in [
        "HDFC1001234",
        "HDF00001234",
        "HDFC000123",
        "HDFC00012345",
        "HDFC0-01234",
        "1234000ABCD",
        "",
    ]:
        assert_error(await submit(client, user, kyc_body(ifsc=ifsc)), 422, "validation_error")
    assert (await client.get("/api/v1/kyc", headers=user)).json()["status"] == "NONE"


async def test_account_number_must_be_9_to_18_digits(
    client: httpx.AsyncClient, outbox_path: Path
) -> None:
    user, _ = await new_user(client, outbox_path)
    for account in ["12345678", "1" * 19, "12345678a", "-123456789", "1234567.89", ""]:
        assert_error(
            await submit(client, user, kyc_body(bank_account=account)), 422, "validation_error"
        )
    assert (await client.get("/api/v1/kyc", headers=user)).json()["status"] == "NONE"
    # Both ends of the range are accepted.
    for length in (9, 18):
        other, _ = await new_user(client, outbox_path)
        response = await submit(client, other, kyc_body(bank_account=random_account(length)))
        assert response.status_code == 201, response.text


async def test_lowercase_pan_and_ifsc_are_accepted_and_normalised(
    client: httpx.AsyncClient, outbox_path: Path, admin: dict[str, str]
) -> None:
    user, me = await new_user(client, outbox_path)
    body = kyc_body()
    response = await submit(
        client, user, {**body, "pan": body["pan"].lower(), "ifsc": body["ifsc"].lower()}
    )
    assert response.status_code == 201, response.text
    view = response.json()
    assert view["pan"] == masked(body["pan"])
    assert view["ifsc"] == body["ifsc"]
    queue = (await client.get("/api/v1/admin/kyc?status=PENDING&limit=200", headers=admin)).json()[
        "items"
    ]
    [item] = [i for i in queue if i["id"] == view["id"]]
    assert (item["pan"], item["ifsc"], item["user_id"]) == (body["pan"], body["ifsc"], me["id"])


async def test_unknown_field_is_422_validation_error(
    client: httpx.AsyncClient, outbox_path: Path
) -> None:
    user, _ = await new_user(client, outbox_path)
    assert_error(
        await submit(client, user, {**kyc_body(), "aadhaar": "123412341234"}),
        422,
        "validation_error",
    )
    assert (await client.get("/api/v1/kyc", headers=user)).json()["status"] == "NONE"


async def test_missing_field_is_422_validation_error(
    client: httpx.AsyncClient, outbox_path: Path
) -> None:
    user, _ = await new_user(client, outbox_path)
    for field in ("pan", "name", "bank_account", "ifsc"):
        body = kyc_body()
        del body[field]
        assert_error(await submit(client, user, body), 422, "validation_error")


async def test_submission_needs_a_session(client: httpx.AsyncClient) -> None:
    assert_error(await submit(client, {}, kyc_body()), 401, "unauthorized")
    assert_error(await client.get("/api/v1/kyc"), 401, "unauthorized")


# --- creation and the user's view --------------------------------------------------


async def test_submission_answers_201_pending_with_pan_and_account_masked(
    client: httpx.AsyncClient, outbox_path: Path
) -> None:
    user, _ = await new_user(client, outbox_path)
    body = kyc_body()
    response = await submit(client, user, body)
    assert response.status_code == 201, response.text
    view = response.json()
    assert isinstance(view["id"], int)
    assert view["status"] == "PENDING"
    assert view["name"] == body["name"]
    assert view["ifsc"] == body["ifsc"]
    assert view["pan"] == masked(body["pan"])
    assert view["bank_account"] == masked(body["bank_account"])
    assert view["reason"] is None
    assert body["pan"] not in response.text
    assert body["bank_account"] not in response.text

    mine = await client.get("/api/v1/kyc", headers=user)
    assert mine.status_code == 200
    assert mine.json() == view
    assert body["pan"] not in mine.text
    assert body["bank_account"] not in mine.text


async def test_get_without_any_request_is_status_none(
    client: httpx.AsyncClient, outbox_path: Path
) -> None:
    user, _ = await new_user(client, outbox_path)
    response = await client.get("/api/v1/kyc", headers=user)
    assert response.status_code == 200
    view = response.json()
    assert view["status"] == "NONE"
    assert view.get("id") is None
    assert await kyc_status(client, user) == "NONE"


async def test_identical_resubmission_while_pending_returns_the_same_request_with_200(
    client: httpx.AsyncClient, outbox_path: Path, db: asyncpg.Pool
) -> None:
    user, me = await new_user(client, outbox_path)
    body = kyc_body()
    first = await submit(client, user, body)
    again = await submit(client, user, body)
    # The same details typed differently (case, spaces) are the same request.
    spelled = await submit(
        client, user, {**body, "pan": f" {body['pan'].lower()} ", "name": " Asha  Rao "}
    )
    assert (first.status_code, again.status_code, spelled.status_code) == (201, 200, 200)
    assert again.json() == first.json()
    assert spelled.json() == first.json()
    assert await db.fetchval("SELECT count(*) FROM kyc_requests WHERE user_id = $1", me["id"]) == 1


async def test_different_resubmission_while_pending_is_409_kyc_pending(
    client: httpx.AsyncClient, outbox_path: Path, db: asyncpg.Pool
) -> None:
    user, me = await new_user(client, outbox_path)
    body = kyc_body()
    first = await submit(client, user, body)
    assert first.status_code == 201
    for change in (
        {"pan": random_pan()},
        {"name": "Asha Rani"},
        {"bank_account": random_account()},
        {"ifsc": "SBIN0000001"},
    ):
        assert_error(await submit(client, user, {**body, **change}), 409, "kyc_pending")
    assert (await client.get("/api/v1/kyc", headers=user)).json() == first.json()
    assert await db.fetchval("SELECT count(*) FROM kyc_requests WHERE user_id = $1", me["id"]) == 1


async def test_ten_concurrent_identical_submissions_create_exactly_one_request(
    client: httpx.AsyncClient, outbox_path: Path, db: asyncpg.Pool
) -> None:
    user, me = await new_user(client, outbox_path)
    body = kyc_body()
    responses = await asyncio.gather(*(submit(client, user, body) for _ in range(10)))
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201], [
        r.text for r in responses
    ]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await db.fetchval("SELECT count(*) FROM kyc_requests WHERE user_id = $1", me["id"]) == 1


async def test_ten_concurrent_different_submissions_create_exactly_one_request(
    client: httpx.AsyncClient, outbox_path: Path, db: asyncpg.Pool
) -> None:
    user, me = await new_user(client, outbox_path)
    responses = await asyncio.gather(*(submit(client, user, kyc_body()) for _ in range(10)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 9, [r.text for r in responses]
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {"kyc_pending"}
    assert await db.fetchval("SELECT count(*) FROM kyc_requests WHERE user_id = $1", me["id"]) == 1


async def test_pan_and_account_never_reach_the_logs(
    client: httpx.AsyncClient, outbox_path: Path, admin: dict[str, str]
) -> None:
    records: list[str] = []
    sink = logger.add(records.append, level="TRACE", serialize=True)
    try:
        user, _ = await new_user(client, outbox_path)
        body = kyc_body()
        created = await submit(client, user, body)
        assert created.status_code == 201
        assert (await submit(client, user, {**body, "name": "Other Name"})).status_code == 409
        assert (await decide(client, admin, created.json()["id"], "VERIFIED")).status_code == 200
    finally:
        logger.remove(sink)
    assert records, "nothing was logged: the check would prove nothing"
    text = "\n".join(records)
    assert body["pan"] not in text
    assert body["bank_account"] not in text


# --- /me follows the request ----------------------------------------------------------


async def test_me_kyc_status_goes_from_pending_to_verified(
    client: httpx.AsyncClient, outbox_path: Path, admin: dict[str, str]
) -> None:
    user, _ = await new_user(client, outbox_path)
    created = (await submit(client, user, kyc_body())).json()
    assert await kyc_status(client, user) == "PENDING"
    assert (await decide(client, admin, created["id"], "VERIFIED")).status_code == 200
    assert await kyc_status(client, user) == "VERIFIED"
    assert (await client.get("/api/v1/kyc", headers=user)).json()["status"] == "VERIFIED"


async def test_me_kyc_status_goes_from_pending_to_rejected(
    client: httpx.AsyncClient, outbox_path: Path, admin: dict[str, str]
) -> None:
    user, _ = await new_user(client, outbox_path)
    created = (await submit(client, user, kyc_body())).json()
    assert await kyc_status(client, user) == "PENDING"
    assert (
        await decide(client, admin, created["id"], "REJECTED", "blurred PAN card")
    ).status_code == 200
    assert await kyc_status(client, user) == "REJECTED"
    mine = (await client.get("/api/v1/kyc", headers=user)).json()
    assert (mine["status"], mine["reason"]) == ("REJECTED", "blurred PAN card")


# --- the admin queue ------------------------------------------------------------


async def test_admin_queue_shows_unmasked_fields_with_the_spec_keys(
    client: httpx.AsyncClient, outbox_path: Path, admin: dict[str, str]
) -> None:
    user, me = await new_user(client, outbox_path)
    body = kyc_body()
    created = (await submit(client, user, body)).json()
    response = await client.get(
        "/api/v1/admin/kyc", params={"status": "PENDING", "limit": 200}, headers=admin
    )
    assert response.status_code == 200
    page = response.json()
    assert set(page) == {"items", "next_cursor"}
    [item] = [i for i in page["items"] if i["id"] == created["id"]]
    assert SPEC_ADMIN_KEYS <= set(item)
    assert {key: item[key] for key in SPEC_ADMIN_KEYS - {"created_at"}} == {
        "id": created["id"],
        "user_id": me["id"],
        "phone": me["phone"],
        "name": body["name"],
        "pan": body["pan"],
        "bank_account": body["bank_account"],
        "ifsc": body["ifsc"],
        "status": "PENDING",
        "reason": None,
    }
    assert item["created_at"] == created["created_at"]
    assert all(i["status"] == "PENDING" for i in page["items"])


async def test_admin_queue_is_newest_first_and_pages_visit_every_item_once(
    client: httpx.AsyncClient, outbox_path: Path, admin: dict[str, str], db: asyncpg.Pool
) -> None:
    mine = []
    for _ in range(5):
        user, _ = await new_user(client, outbox_path)
        mine.append((await submit(client, user, kyc_body())).json()["id"])
    seen: list[dict] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"status": "PENDING", "limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get("/api/v1/admin/kyc", params=params, headers=admin)
        assert response.status_code == 200, response.text
        page = response.json()
        assert 1 <= len(page["items"]) <= 2
        seen.extend(page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10_000
    ids = [item["id"] for item in seen]
    assert len(ids) == len(set(ids)), "an item was listed twice"
    assert ids == sorted(ids, reverse=True)
    created = [item["created_at"] for item in seen]
    assert created == sorted(created, reverse=True)
    assert all(item["status"] == "PENDING" for item in seen)
    assert set(mine) <= set(ids)
    expected = await db.fetch(
        "SELECT id FROM kyc_requests WHERE status = 'PENDING' ORDER BY id DESC"
    )
    assert ids == [row["id"] for row in expected]
    # The newest of all is on the first page.
    first = (
        await client.get(
            "/api/v1/admin/kyc", params={"status": "PENDING", "limit": 1}, headers=admin
        )
    ).json()
    assert first["items"][0]["id"] == mine[-1]


async def test_admin_queue_filters_by_status_and_without_status_lists_all(
    client: httpx.AsyncClient, outbox_path: Path, admin: dict[str, str], db: asyncpg.Pool
) -> None:
    user, _ = await new_user(client, outbox_path)
    created = (await submit(client, user, kyc_body())).json()
    assert (
        await decide(client, admin, created["id"], "REJECTED", "name mismatch")
    ).status_code == 200
    for status in ("PENDING", "VERIFIED", "REJECTED"):
        items = (
            await client.get(
                "/api/v1/admin/kyc", params={"status": status, "limit": 200}, headers=admin
            )
        ).json()["items"]
        assert {i["status"] for i in items} <= {status}
        assert (created["id"] in {i["id"] for i in items}) == (status == "REJECTED")
    everything = (await client.get("/api/v1/admin/kyc", params={"limit": 1}, headers=admin)).json()
    newest = await db.fetchval("SELECT max(id) FROM kyc_requests")
    assert everything["items"][0]["id"] == newest
    assert_error(
        await client.get("/api/v1/admin/kyc", params={"status": "pending?"}, headers=admin),
        400,
        "validation_error",
    )


async def test_admin_routes_are_403_forbidden_for_users(
    client: httpx.AsyncClient, outbox_path: Path, db: asyncpg.Pool
) -> None:
    user, _ = await new_user(client, outbox_path)
    created = (await submit(client, user, kyc_body())).json()
    assert_error(
        await client.get("/api/v1/admin/kyc?status=PENDING", headers=user), 403, "forbidden"
    )
    # Not even one's own request can be self-approved.
    assert_error(await decide(client, user, created["id"], "VERIFIED"), 403, "forbidden")
    assert (
        await db.fetchval("SELECT status FROM kyc_requests WHERE id = $1", created["id"])
        == "PENDING"
    )
    assert_error(await client.get("/api/v1/admin/kyc"), 401, "unauthorized")


# --- decisions ------------------------------------------------------------------------


async def test_verify_decision_answers_200_with_the_updated_request(
    client: httpx.AsyncClient, outbox_path: Path, admin: dict[str, str]
) -> None:
    user, me = await new_user(client, outbox_path)
    body = kyc_body()
    created = (await submit(client, user, body)).json()
    response = await decide(client, admin, created["id"], "VERIFIED")
    assert response.status_code == 200, response.text
    decided = response.json()
    assert SPEC_ADMIN_KEYS <= set(decided)
    assert (decided["id"], decided["user_id"], decided["status"], decided["reason"]) == (
        created["id"],
        me["id"],
        "VERIFIED",
        None,
    )
    assert (decided["pan"], decided["bank_account"]) == (body["pan"], body["bank_account"])
    assert decided["created_at"] == created["created_at"]


async def test_reject_decision_answers_200_with_the_reason(
    client: httpx.AsyncClient, outbox_path: Path, admin: dict[str, str]
) -> None:
    user, _ = await new_user(client, outbox_path)
    created = (await submit(client, user, kyc_body())).json()
    response = await decide(
        client, admin, created["id"], "REJECTED", "  PAN does not match the name  "
    )
    assert response.status_code == 200, response.text
    decided = response.json()
    assert (decided["id"], decided["status"], decided["reason"]) == (
        created["id"],
        "REJECTED",
        "PAN does not match the name",
    )


async def test_rejection_without_a_reason_is_422_validation_error(
    client: httpx.AsyncClient, outbox_path: Path, admin: dict[str, str], db: asyncpg.Pool
) -> None:
    user, _ = await new_user(client, outbox_path)
    created = (await submit(client, user, kyc_body())).json()
    assert_error(await decide(client, admin, created["id"], "REJECTED"), 422, "validation_error")
    assert_error(
        await decide(client, admin, created["id"], "REJECTED", ""), 422, "validation_error"
    )
    assert_error(
        await decide(client, admin, created["id"], "REJECTED", "   "), 422, "validation_error"
    )
    null_reason = await client.post(
        f"/api/v1/admin/kyc/{created['id']}/decision",
        json={"decision": "REJECTED", "reason": None},
        headers=admin,
    )
    assert_error(null_reason, 422, "validation_error")
    assert (
        await db.fetchval("SELECT status FROM kyc_requests WHERE id = $1", created["id"])
        == "PENDING"
    )


async def test_unknown_decision_value_is_422_validation_error(
    client: httpx.AsyncClient, outbox_path: Path, admin: dict[str, str]
) -> None:
    user, _ = await new_user(client, outbox_path)
    created = (await submit(client, user, kyc_body())).json()
    for decision in ("verified", "PENDING", "APPROVED", ""):
        assert_error(
            await decide(client, admin, created["id"], decision, "x"), 422, "validation_error"
        )


async def test_deciding_twice_is_409_invalid_transition(
    client: httpx.AsyncClient, outbox_path: Path, admin: dict[str, str]
) -> None:
    for first, reason in (("VERIFIED", None), ("REJECTED", "expired document")):
        user, _ = await new_user(client, outbox_path)
        created = (await submit(client, user, kyc_body())).json()
        assert (await decide(client, admin, created["id"], first, reason)).status_code == 200
        assert_error(
            await decide(client, admin, created["id"], "VERIFIED"), 409, "invalid_transition"
        )
        assert_error(
            await decide(client, admin, created["id"], "REJECTED", "changed my mind"),
            409,
            "invalid_transition",
        )
        assert await kyc_status(client, user) == first


async def test_concurrent_decisions_on_one_request_apply_once(
    client: httpx.AsyncClient, outbox_path: Path, admin: dict[str, str]
) -> None:
    user, _ = await new_user(client, outbox_path)
    created = (await submit(client, user, kyc_body())).json()
    responses = await asyncio.gather(
        *(
            decide(
                client, admin, created["id"], *(("VERIFIED", None) if i % 2 else ("REJECTED", "no"))
            )
            for i in range(10)
        )
    )
    assert sorted(r.status_code for r in responses) == [200] + [409] * 9
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {
        "invalid_transition"
    }
    [winner] = [r.json() for r in responses if r.status_code == 200]
    assert await kyc_status(client, user) == winner["status"]


async def test_decision_on_an_unknown_id_is_404_not_found(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    assert_error(await decide(client, admin, NO_SUCH_KYC_ID, "VERIFIED"), 404, "not_found")
    assert_error(await decide(client, admin, NO_SUCH_KYC_ID, "REJECTED", "x"), 404, "not_found")


# --- after a decision ------------------------------------------------------------------


async def test_resubmission_after_rejection_creates_a_new_request_201(
    client: httpx.AsyncClient, outbox_path: Path, admin: dict[str, str]
) -> None:
    user, _ = await new_user(client, outbox_path)
    body = kyc_body()
    first = (await submit(client, user, body)).json()
    assert (await decide(client, admin, first["id"], "REJECTED", "unreadable")).status_code == 200
    # The very same details may be sent again: it is a new review.
    again = await submit(client, user, body)
    assert again.status_code == 201, again.text
    second = again.json()
    assert second["id"] > first["id"]
    assert (second["status"], second["reason"]) == ("PENDING", None)
    assert (await client.get("/api/v1/kyc", headers=user)).json() == second
    assert await kyc_status(client, user) == "PENDING"
    assert (await decide(client, admin, second["id"], "VERIFIED")).status_code == 200
    assert await kyc_status(client, user) == "VERIFIED"


async def test_submission_after_verification_is_409(
    client: httpx.AsyncClient, outbox_path: Path, admin: dict[str, str], db: asyncpg.Pool
) -> None:
    user, me = await new_user(client, outbox_path)
    body = kyc_body()
    created = (await submit(client, user, body)).json()
    assert (await decide(client, admin, created["id"], "VERIFIED")).status_code == 200
    assert_error(await submit(client, user, body), 409, "kyc_verified")
    assert_error(await submit(client, user, kyc_body()), 409, "kyc_verified")
    assert await db.fetchval("SELECT count(*) FROM kyc_requests WHERE user_id = $1", me["id"]) == 1
    assert await kyc_status(client, user) == "VERIFIED"


async def test_a_pan_verified_for_one_user_is_refused_to_another_at_submission(
    client: httpx.AsyncClient, outbox_path: Path, admin: dict[str, str]
) -> None:
    alice, _ = await new_user(client, outbox_path)
    bob, _ = await new_user(client, outbox_path)
    pan = random_pan()
    created = (await submit(client, alice, kyc_body(pan=pan))).json()
    assert (await decide(client, admin, created["id"], "VERIFIED")).status_code == 200
    assert_error(await submit(client, bob, kyc_body(pan=pan)), 409, "pan_in_use")
    assert_error(await submit(client, bob, kyc_body(pan=pan.lower())), 409, "pan_in_use")
    assert await kyc_status(client, bob) == "NONE"


async def test_a_pan_pending_for_two_users_can_be_verified_for_only_one(
    client: httpx.AsyncClient, outbox_path: Path, admin: dict[str, str]
) -> None:
    alice, _ = await new_user(client, outbox_path)
    bob, _ = await new_user(client, outbox_path)
    pan = random_pan()
    for_alice = (await submit(client, alice, kyc_body(pan=pan))).json()
    for_bob = (await submit(client, bob, kyc_body(pan=pan))).json()
    assert (await decide(client, admin, for_alice["id"], "VERIFIED")).status_code == 200
    assert_error(await decide(client, admin, for_bob["id"], "VERIFIED"), 409, "pan_in_use")
    assert await kyc_status(client, bob) == "PENDING"
    # Bob's request can still be rejected.
    rejected = await decide(
        client, admin, for_bob["id"], "REJECTED", "PAN belongs to another account"
    )
    assert rejected.status_code == 200
    assert json.loads(rejected.text)["status"] == "REJECTED"
