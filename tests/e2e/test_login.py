"""Journey 1 through HTTP: OTP login, sessions, logout, /me, CSRF."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import httpx
from litestar import Litestar

from probo.services import services_of
from tests.conftest import ADMIN_PHONE, bearer, last_otp, login, new_phone


async def test_first_login_creates_user_with_bonus_and_returns_token(
    client: httpx.AsyncClient, outbox_path: Path, db: asyncpg.Pool, app: Litestar
) -> None:
    phone = new_phone()
    token, body = await login(client, outbox_path, phone)
    user = body["user"]
    assert user["phone"] == phone
    assert user["is_new"] is True
    assert user["role"] == "user"
    assert user["kyc_status"] == "NONE"
    assert len(user["referral_code"]) == 8
    me = await client.get("/api/v1/me", headers=bearer(token))
    assert me.status_code == 200
    assert me.json() == user
    wallet = await client.get("/api/v1/wallet", headers=bearer(token))
    assert wallet.json() == {"currency": "INR", "balance": 1500, "locked": 0, "available": 1500}
    history = (await client.get("/api/v1/wallet/transactions", headers=bearer(token))).json()
    assert [(t["kind"], t["amount"]) for t in history["items"]] == [("signup_bonus", 1500)]
    assert history["next_cursor"] is None
    # The engine holds the bonus too.
    engine = services_of(app).engine
    assert engine.exchange.cash(user["id"]) == 1500


async def test_second_login_is_the_same_user_without_a_second_bonus(
    client: httpx.AsyncClient, outbox_path: Path, app: Litestar
) -> None:
    phone = new_phone()
    first_token, first = await login(client, outbox_path, phone)
    # A later login needs a new code after the resend cooldown; the cooldown is per phone.
    await services_of(app).redis.delete(
        services_of(app).settings.redis_key_prefix + f"otp-cooldown:{phone}"
    )
    second_token, second = await login(client, outbox_path, phone)
    assert second["user"]["id"] == first["user"]["id"]
    assert second_token != first_token
    wallet = (await client.get("/api/v1/wallet", headers=bearer(second_token))).json()
    assert wallet["balance"] == 1500


async def test_bare_ten_digit_number_is_normalised_to_plus_91(
    client: httpx.AsyncClient, outbox_path: Path
) -> None:
    e164 = new_phone()
    bare = e164[3:]
    response = await client.post("/api/v1/auth/otp", json={"phone": bare})
    assert response.status_code == 202
    assert response.json()["phone"] == e164
    verify = await client.post(
        "/api/v1/auth/verify", json={"phone": bare, "otp": last_otp(outbox_path, e164)}
    )
    assert verify.status_code == 200
    assert verify.json()["user"]["phone"] == e164


async def test_admin_phone_gets_admin_role(
    client: httpx.AsyncClient, admin_login: tuple[str, dict]
) -> None:
    token, body = admin_login
    assert body["user"]["phone"] == ADMIN_PHONE
    assert body["user"]["role"] == "admin"
    assert (await client.get("/api/v1/me", headers=bearer(token))).json()["role"] == "admin"


async def test_cookie_session_is_http_only_lax_and_works(
    client: httpx.AsyncClient, outbox_path: Path
) -> None:
    phone = new_phone()
    await client.post("/api/v1/auth/otp", json={"phone": phone})
    response = await client.post(
        "/api/v1/auth/verify", json={"phone": phone, "otp": last_otp(outbox_path, phone)}
    )
    set_cookie = response.headers["set-cookie"]
    assert set_cookie.startswith("probo_session=")
    attributes = {part.strip().lower() for part in set_cookie.split(";")[1:]}
    assert {"httponly", "samesite=lax", "path=/"} <= attributes
    assert "secure" not in attributes  # this suite's settings turn it off for plain http
    me = await client.get("/api/v1/me")
    assert me.status_code == 200
    assert me.json()["phone"] == phone
    client.cookies.clear()


async def test_wrong_otp_then_void_after_five_attempts(
    client: httpx.AsyncClient, outbox_path: Path
) -> None:
    phone = new_phone()
    await client.post("/api/v1/auth/otp", json={"phone": phone})
    real = last_otp(outbox_path, phone)
    wrong = f"{(int(real) + 1) % 1_000_000:06d}"
    for _ in range(5):
        response = await client.post("/api/v1/auth/verify", json={"phone": phone, "otp": wrong})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "otp_invalid"
    response = await client.post("/api/v1/auth/verify", json={"phone": phone, "otp": real})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "otp_expired"


async def test_parallel_guesses_cannot_exceed_the_attempt_limit(
    client: httpx.AsyncClient, outbox_path: Path
) -> None:
    phone = new_phone()
    await client.post("/api/v1/auth/otp", json={"phone": phone})
    real = last_otp(outbox_path, phone)
    guesses = [f"{(int(real) + i) % 1_000_000:06d}" for i in range(1, 21)]
    responses = await asyncio.gather(
        *(client.post("/api/v1/auth/verify", json={"phone": phone, "otp": g}) for g in guesses)
    )
    codes = sorted(r.json()["error"]["code"] for r in responses)
    assert codes.count("otp_invalid") == 5
    assert codes.count("otp_expired") == 15


async def test_otp_is_single_use(client: httpx.AsyncClient, outbox_path: Path) -> None:
    phone = new_phone()
    await client.post("/api/v1/auth/otp", json={"phone": phone})
    otp = last_otp(outbox_path, phone)
    first = await client.post("/api/v1/auth/verify", json={"phone": phone, "otp": otp})
    assert first.status_code == 200
    again = await client.post("/api/v1/auth/verify", json={"phone": phone, "otp": otp})
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "otp_expired"
    client.cookies.clear()


async def test_otp_expires_after_its_ttl(
    client: httpx.AsyncClient, outbox_path: Path, app: Litestar
) -> None:
    phone = new_phone()
    await client.post("/api/v1/auth/otp", json={"phone": phone})
    otp = last_otp(outbox_path, phone)
    redis = services_of(app).redis
    key = services_of(app).settings.redis_key_prefix + f"otp:{phone}"
    assert 295 <= await redis.ttl(key) <= 300
    await redis.pexpire(key, 1)  # let the 300 s TTL run out now
    await asyncio.sleep(0.05)
    response = await client.post("/api/v1/auth/verify", json={"phone": phone, "otp": otp})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "otp_expired"


async def test_otp_is_stored_hashed(
    client: httpx.AsyncClient, outbox_path: Path, app: Litestar
) -> None:
    phone = new_phone()
    await client.post("/api/v1/auth/otp", json={"phone": phone})
    otp = last_otp(outbox_path, phone)
    redis = services_of(app).redis
    stored = await redis.hgetall(services_of(app).settings.redis_key_prefix + f"otp:{phone}")
    assert otp.encode() not in b"".join(stored.values())
    assert len(stored[b"digest"]) == 64


async def test_resend_cooldown_answers_429_with_retry_after(client: httpx.AsyncClient) -> None:
    phone = new_phone()
    assert (await client.post("/api/v1/auth/otp", json={"phone": phone})).status_code == 202
    again = await client.post("/api/v1/auth/otp", json={"phone": phone})
    assert again.status_code == 429
    assert again.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(again.headers["retry-after"]) <= 30


async def test_at_most_five_codes_an_hour_per_phone(
    client: httpx.AsyncClient, app: Litestar
) -> None:
    phone = new_phone()
    redis = services_of(app).redis
    cooldown = services_of(app).settings.redis_key_prefix + f"otp-cooldown:{phone}"
    for _ in range(5):
        assert (await client.post("/api/v1/auth/otp", json={"phone": phone})).status_code == 202
        await redis.delete(cooldown)
    sixth = await client.post("/api/v1/auth/otp", json={"phone": phone})
    assert sixth.status_code == 429
    assert int(sixth.headers["retry-after"]) > 30


async def test_logout_revokes_the_token(client: httpx.AsyncClient, outbox_path: Path) -> None:
    token, _ = await login(client, outbox_path)
    assert (await client.get("/api/v1/me", headers=bearer(token))).status_code == 200
    response = await client.post("/api/v1/auth/logout", headers=bearer(token))
    assert response.status_code == 200
    refused = await client.get("/api/v1/me", headers=bearer(token))
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"


async def test_requests_without_or_with_bad_tokens_are_401(client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic abc"}):
        response = await client.get("/api/v1/me", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"


async def test_cookie_write_from_a_foreign_origin_is_forbidden(
    client: httpx.AsyncClient, outbox_path: Path
) -> None:
    token, _ = await login(client, outbox_path)
    client.cookies.set("probo_session", token)
    try:
        foreign = await client.post(
            "/api/v1/auth/logout", headers={"Origin": "https://evil.example"}
        )
        assert foreign.status_code == 403
        assert foreign.json()["error"]["code"] == "forbidden"
        # Still logged in: the forged logout did nothing.
        assert (await client.get("/api/v1/me")).status_code == 200
        same = await client.post("/api/v1/auth/logout", headers={"Origin": str(client.base_url)})
        assert same.status_code == 200
    finally:
        client.cookies.clear()
    # A bearer token is not sent by browsers on their own: no origin check needed.
    token, _ = await login(client, outbox_path)
    response = await client.post(
        "/api/v1/auth/logout", headers={**bearer(token), "Origin": "https://evil.example"}
    )
    assert response.status_code == 200
