"""Hostile and malformed input (SPEC §9, §10): every failure is a 4xx with the error
shape `{"error": {"code", "message"}}`, and no input ever gets a 500."""

from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.conftest import bearer, login, new_phone

HUGE = "A" * 100_000  # 100 KB of one string: over the body limit
NO_SUCH_KYC_ID = 2**63 - 1


@pytest_asyncio.fixture(scope="module")
async def user(client: httpx.AsyncClient, outbox_path: Path) -> AsyncIterator[dict[str, str]]:
    token, _ = await login(client, outbox_path)
    yield bearer(token)


def assert_error_shape(response: httpx.Response, what: str = "") -> dict:
    """A 4xx whose body is exactly {"error": {"code": <non-empty str>, "message": <str>, ...}}."""
    context = f"{what}: {response.status_code} {response.text[:300]}"
    assert 400 <= response.status_code < 500, context
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, context
    error = body["error"]
    assert isinstance(error, dict), context
    assert isinstance(error.get("code"), str) and error["code"], context
    assert isinstance(error.get("message"), str), context
    assert response.headers["content-type"].startswith("application/json"), context
    return error


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    error = assert_error_shape(response)
    assert (response.status_code, error["code"]) == (status, code), response.text


# Raw bodies that are wrong whatever the route expects.
RAW_BODIES: dict[str, bytes] = {
    "invalid json": b'{"phone": "+919812345678",',
    "not json at all": b"phone=+919812345678",
    "json array": b'[{"phone": "+919812345678"}]',
    "empty body": b"",
    "json null": b"null",
    "json string": b'"hello"',
    "json number": b"12345",
    "json true": b"true",
    "invalid utf-8": b'{"code": "\xff\xfe"}',
    "nan literal": b'{"amount": NaN}',
    "deep nesting": b"[" * 5_000 + b"]" * 5_000,
    "deep object": b'{"a":' * 2_000 + b"1" + b"}" * 2_000,
    "huge body": json.dumps({"x": HUGE}).encode(),
    "nul bytes": b'{"\x00": "\x00"}',
}

# Per route: a valid body (to derive the rest from), its required fields, and bodies of
# the right JSON shape with wrongly typed fields.
ROUTES: dict[str, dict] = {
    "/api/v1/auth/otp": {
        "valid": lambda: {"phone": new_phone()},
        "wrong_types": [
            {"phone": 9812345678},
            {"phone": True},
            {"phone": None},
            {"phone": ["+919812345678"]},
            {"phone": {"n": 1}},
        ],
        "auth": None,
    },
    "/api/v1/auth/verify": {
        "valid": lambda: {"phone": new_phone(), "otp": "123456"},
        "wrong_types": [
            {"phone": new_phone(), "otp": 123456},
            {"phone": new_phone(), "otp": 123456.0},
            {"phone": new_phone(), "otp": True},
            {"phone": 9812345678, "otp": "123456"},
            {"phone": new_phone(), "otp": None},
        ],
        "auth": None,
    },
    "/api/v1/wallet/deposits": {
        "valid": lambda: {"amount": 10_000, "idempotency_key": "malformed-valid"},
        "wrong_types": [
            {"amount": 1000.5, "idempotency_key": "wt-1"},
            {"amount": True, "idempotency_key": "wt-2"},
            {"amount": None, "idempotency_key": "wt-3"},
            {"amount": [1000], "idempotency_key": "wt-4"},
            {"amount": {"paise": 1000}, "idempotency_key": "wt-5"},
            {"amount": 1000, "idempotency_key": 42},
            {"amount": 1000, "idempotency_key": ""},
            {"amount": 1000, "idempotency_key": None},
        ],
        "auth": "user",
    },
    "/api/v1/kyc": {
        "valid": lambda: {
            "pan": "ABCDE1234F",
            "name": "Asha Rao",
            "bank_account": "123456789012",
            "ifsc": "HDFC0001234",
        },
        "wrong_types": [
            {
                "pan": 1234,
                "name": "Asha Rao",
                "bank_account": "123456789012",
                "ifsc": "HDFC0001234",
            },
            {
                "pan": "ABCDE1234F",
                "name": None,
                "bank_account": "123456789012",
                "ifsc": "HDFC0001234",
            },
            {
                "pan": "ABCDE1234F",
                "name": "Asha Rao",
                "bank_account": 123456789012,
                "ifsc": "HDFC0001234",
            },
            {
                "pan": "ABCDE1234F",
                "name": "Asha Rao",
                "bank_account": "123456789012",
                "ifsc": False,
            },
            {
                "pan": ["ABCDE1234F"],
                "name": "Asha Rao",
                "bank_account": "123456789012",
                "ifsc": "HDFC0001234",
            },
        ],
        "auth": "user",
    },
    f"/api/v1/admin/kyc/{NO_SUCH_KYC_ID}/decision": {
        "valid": lambda: {"decision": "REJECTED", "reason": "bad scan"},
        "wrong_types": [
            {"decision": True},
            {"decision": 1},
            {"decision": None},
            {"decision": "REJECTED", "reason": 5},
            {"decision": "REJECTED", "reason": ["bad"]},
            {"decision": "verified"},
        ],
        "auth": "admin",
    },
    "/api/v1/referrals": {
        "valid": lambda: {"code": "ABCDEFGH"},
        "wrong_types": [
            {"code": 12345678},
            {"code": None},
            {"code": True},
            {"code": ["ABCDEFGH"]},
            {"code": 1.5},
        ],
        "auth": "user",
    },
}
REQUIRED = {
    "/api/v1/auth/otp": ["phone"],
    "/api/v1/auth/verify": ["phone", "otp"],
    "/api/v1/wallet/deposits": ["amount", "idempotency_key"],
    "/api/v1/kyc": ["pan", "name", "bank_account", "ifsc"],
    f"/api/v1/admin/kyc/{NO_SUCH_KYC_ID}/decision": ["decision"],
    "/api/v1/referrals": ["code"],
}


def malformed_bodies(route: str) -> list[tuple[str, bytes]]:
    spec = ROUTES[route]
    valid: Callable[[], dict] = spec["valid"]
    cases = list(RAW_BODIES.items())
    cases += [(f"wrong type {body}", json.dumps(body).encode()) for body in spec["wrong_types"]]
    cases.append(("missing everything", b"{}"))
    for field in REQUIRED[route]:
        body = valid()
        del body[field]
        cases.append((f"missing {field}", json.dumps(body).encode()))
    for field in valid():
        cases.append((f"huge {field}", json.dumps({**valid(), field: HUGE}).encode()))
        cases.append((f"long {field}", json.dumps({**valid(), field: "9" * 20_000}).encode()))
    cases.append(("unknown field", json.dumps({**valid(), "is_admin": True}).encode()))
    cases.append(("unknown field only", json.dumps({"is_admin": True}).encode()))
    cases.append(
        ("duplicate keys", b"{" + b",".join(b'"%s": 1' % f.encode() for f in valid()) + b',"x": 1}')
    )
    return cases


def headers_for(route: str, user: dict[str, str], admin: dict[str, str]) -> dict[str, str]:
    auth = ROUTES[route]["auth"]
    headers = {"content-type": "application/json"}
    if auth == "user":
        headers.update(user)
    elif auth == "admin":
        headers.update(admin)
    return headers


@pytest.mark.parametrize("route", list(ROUTES))
async def test_every_malformed_body_is_a_4xx_with_the_error_shape(
    client: httpx.AsyncClient, route: str, user: dict[str, str], admin: dict[str, str]
) -> None:
    headers = headers_for(route, user, admin)
    for what, content in malformed_bodies(route):
        response = await client.post(route, content=content, headers=headers)
        error = assert_error_shape(response, f"{route} {what}")
        if what == "huge body" or what.startswith("huge "):
            assert response.status_code in (400, 413), what
        if what in (
            "invalid json",
            "json array",
            "empty body",
            "unknown field",
            "missing everything",
        ) or what.startswith(("missing ", "wrong type ")):
            assert response.status_code in (400, 422), what
            assert error["code"] == "validation_error", what


@pytest.mark.parametrize("route", [r for r in ROUTES if ROUTES[r]["auth"]])
async def test_malformed_bodies_without_a_session_are_401(
    client: httpx.AsyncClient, route: str
) -> None:
    for what, content in malformed_bodies(route)[:5]:
        response = await client.post(
            route, content=content, headers={"content-type": "application/json"}
        )
        error = assert_error_shape(response, f"{route} {what}")
        # Who is asking is settled before the body is judged.
        assert (response.status_code, error["code"]) == (401, "unauthorized"), what


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/api/v1/wallet/deposits", {"amount": "1000", "idempotency_key": "string-amount"}),
        ("/api/v1/wallet/deposits", {"amount": 1000.0, "idempotency_key": "float-amount"}),
    ],
)
async def test_an_amount_that_is_not_a_json_integer_is_refused(
    client: httpx.AsyncClient, route: str, body: dict, user: dict[str, str]
) -> None:
    response = await client.post(route, json=body, headers=user)
    assert_error(response, 422, "validation_error")


async def test_logout_ignores_its_body_and_never_fails_on_it(
    client: httpx.AsyncClient, outbox_path: Path
) -> None:
    for what, content in list(RAW_BODIES.items()) + [("unknown field", b'{"all": true}')]:
        token, _ = await login(client, outbox_path)
        response = await client.post(
            "/api/v1/auth/logout",
            content=content,
            headers={**bearer(token), "content-type": "application/json"},
        )
        if response.status_code == 200:
            assert response.json() == {"status": "logged_out"}, what
            assert (await client.get("/api/v1/me", headers=bearer(token))).status_code == 401, what
        else:
            assert_error_shape(response, f"logout {what}")
        # Without a session, whatever the body, it is 401 (or 413 for a body over the limit).
        anonymous = await client.post(
            "/api/v1/auth/logout", content=content, headers={"content-type": "application/json"}
        )
        error = assert_error_shape(anonymous, f"anonymous logout {what}")
        assert error["code"] in ("unauthorized", "payload_too_large"), what


# --- routing ------------------------------------------------------------------


async def test_unknown_route_is_404_not_found(
    client: httpx.AsyncClient, user: dict[str, str]
) -> None:
    for method, path in (
        ("GET", "/api/v1/nothing-here"),
        ("POST", "/api/v1/nothing-here"),
        ("GET", "/api/v2/me"),
        ("GET", "/nothing-here"),  # `/` is the web app (SPEC §14); nothing else is
        ("GET", "/static/no-such-file.js"),
        ("DELETE", "/api/v1/kyc/1"),
        ("GET", "/api/v1/wallet/deposits/1/../../../etc/passwd"),
    ):
        assert_error(await client.request(method, path, headers=user), 404, "not_found")


async def test_wrong_method_is_405_with_the_error_shape(
    client: httpx.AsyncClient, user: dict[str, str]
) -> None:
    for method, path in (
        ("GET", "/api/v1/auth/otp"),
        ("PUT", "/api/v1/auth/verify"),
        ("DELETE", "/api/v1/wallet"),
        ("PATCH", "/api/v1/kyc"),
        ("PUT", "/api/v1/wallet/deposits"),
        ("DELETE", "/api/v1/referrals"),
        ("GET", f"/api/v1/admin/kyc/{NO_SUCH_KYC_ID}/decision"),
    ):
        response = await client.request(method, path, headers=user)
        assert response.status_code == 405, f"{method} {path}: {response.text}"
        assert_error_shape(response, f"{method} {path}")


async def test_path_id_that_is_not_a_positive_int64_is_4xx(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    body = {"decision": "VERIFIED"}
    for kyc_id in (
        "abc",
        "1.5",
        "1e3",
        "0x10",
        str(2**63),
        str(2**64),
        "9" * 400,
        "0",
        "-1",
        "%00",
    ):
        response = await client.post(
            f"/api/v1/admin/kyc/{kyc_id}/decision", json=body, headers=admin
        )
        error = assert_error_shape(response, kyc_id)
        assert (response.status_code, error["code"]) in (
            (400, "validation_error"),
            (404, "not_found"),
        ), kyc_id
    # The largest int64 is a well-formed id that names no request.
    assert_error(
        await client.post(f"/api/v1/admin/kyc/{2**63 - 1}/decision", json=body, headers=admin),
        404,
        "not_found",
    )


# --- query parameters ------------------------------------------------------------


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize("path", ["/api/v1/wallet/transactions", "/api/v1/admin/kyc"])
async def test_bad_limit_or_cursor_is_400_validation_error(
    client: httpx.AsyncClient, path: str, user: dict[str, str], admin: dict[str, str]
) -> None:
    headers = admin if "admin" in path else user
    for query in (
        "limit=0",
        "limit=201",
        "limit=-1",
        "limit=abc",
        "limit=1.5",
        f"limit={2**64}",
        "cursor=garbage",
        "cursor=%00",
        "cursor=" + "A" * 100,
        "cursor=" + cursor_of("id:0"),
        "cursor=" + cursor_of("id:-5"),
        "cursor=" + cursor_of("id:abc"),
        "cursor=" + cursor_of("ts:5"),
        "cursor=" + cursor_of(f"id:{2**63}"),
        "cursor=" + cursor_of(f"id:{10**30}"),
        "cursor=" + base64.urlsafe_b64encode(b"id:\xff").decode(),
    ):
        assert_error(await client.get(f"{path}?{query}", headers=headers), 400, "validation_error")


async def test_limit_bounds_are_inclusive(client: httpx.AsyncClient, user: dict[str, str]) -> None:
    for limit in (1, 200):
        response = await client.get(f"/api/v1/wallet/transactions?limit={limit}", headers=user)
        assert response.status_code == 200, response.text
    # The cursor the server handed out is accepted back.
    first = (await client.get("/api/v1/wallet/transactions?limit=1", headers=user)).json()
    assert (
        first["next_cursor"] is None
        or (
            await client.get(
                f"/api/v1/wallet/transactions?limit=1&cursor={first['next_cursor']}", headers=user
            )
        ).status_code
        == 200
    )


# --- field values -------------------------------------------------------------------


async def test_deposit_amount_outside_100_to_10_000_000_is_422_validation_error(
    client: httpx.AsyncClient, user: dict[str, str]
) -> None:
    before = (await client.get("/api/v1/wallet", headers=user)).json()["balance"]
    for amount in (99, 10_000_001, 0, -100, 2**63, 2**70):
        response = await client.post(
            "/api/v1/wallet/deposits",
            json={"amount": amount, "idempotency_key": f"range-{amount}"},
            headers=user,
        )
        error = assert_error_shape(response, str(amount))
        assert (response.status_code, error["code"]) in (
            (422, "validation_error"),
            (400, "validation_error"),
        ), amount
        if amount in (99, 10_000_001):
            assert response.status_code == 422
    assert (await client.get("/api/v1/wallet", headers=user)).json()["balance"] == before


async def test_phone_that_is_not_a_mobile_number_is_422_validation_error(
    client: httpx.AsyncClient,
) -> None:
    for phone in (
        "12345",
        "+91123",
        "+915812345678",
        "98123456789",
        "+0919812345678",
        "phone",
        "+91 98123 4567x",
        " ",
    ):
        assert_error(
            await client.post("/api/v1/auth/otp", json={"phone": phone}), 422, "validation_error"
        )
        response = await client.post("/api/v1/auth/verify", json={"phone": phone, "otp": "123456"})
        assert_error(response, 422, "validation_error")


async def test_otp_that_is_not_six_digits_is_a_validation_error(client: httpx.AsyncClient) -> None:
    phone = new_phone()
    for otp in ("12ab56", "12345", "1234567", "", " 123456", "١٢٣٤٥٦", "12345\n"):
        response = await client.post("/api/v1/auth/verify", json={"phone": phone, "otp": otp})
        error = assert_error_shape(response, repr(otp))
        assert (response.status_code, error["code"]) in (
            (400, "validation_error"),
            (422, "validation_error"),
        ), otp


async def test_text_postgres_cannot_store_is_422_not_500(
    client: httpx.AsyncClient, outbox_path: Path, user: dict[str, str], admin: dict[str, str]
) -> None:
    response = await client.post(
        "/api/v1/wallet/deposits",
        json={"amount": 1000, "idempotency_key": "nul\u0000key"},
        headers=user,
    )
    assert_error(response, 422, "validation_error")
    token, _ = await login(client, outbox_path)
    pan = (
        "".join(random.choices(string.ascii_uppercase, k=5))
        + f"{random.randrange(10_000):04d}"
        + "Z"
    )
    kyc = await client.post(
        "/api/v1/kyc",
        json={"pan": pan, "name": "Nul Byte", "bank_account": "123456789", "ifsc": "HDFC0001234"},
        headers=bearer(token),
    )
    assert kyc.status_code == 201, kyc.text
    decision = await client.post(
        f"/api/v1/admin/kyc/{kyc.json()['id']}/decision",
        json={"decision": "REJECTED", "reason": "bad\u0000"},
        headers=admin,
    )
    assert_error(decision, 422, "validation_error")
