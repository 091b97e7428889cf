"""Login through each SMS provider, per-IP limits, and the session cookie's flags."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs

import pytest_asyncio
from litestar import Litestar

from probo.app import create_app
from tests.conftest import make_settings, new_phone, serving
from tests.fakes import FakeTwilio


@pytest_asyncio.fixture
async def settings_args(
    server_urls: tuple[str, str], side_database_url: str, redis_prefix: str, outbox_path: Path
) -> AsyncIterator[tuple]:
    yield side_database_url, server_urls[1], redis_prefix, outbox_path


def app_with(args: tuple, **overrides: object) -> Litestar:
    return create_app(make_settings(*args, **overrides))


def twilio_app(args: tuple, fake: FakeTwilio) -> Litestar:
    return app_with(
        args,
        sms_provider="twilio",
        twilio_account_sid="AC123",
        twilio_auth_token="secret-token",
        twilio_from="+15005550006",
        twilio_base_url=fake.base_url,
    )


async def test_login_through_twilio(settings_args: tuple, fake_twilio: FakeTwilio) -> None:
    app = twilio_app(settings_args, fake_twilio)
    phone = new_phone()
    async with serving(app) as client:
        assert (await client.post("/api/v1/auth/otp", json={"phone": phone})).status_code == 202
        [request] = fake_twilio.requests
        assert request.path == "/2010-04-01/Accounts/AC123/Messages.json"
        form = parse_qs(request.body.decode())
        assert form["To"] == [phone] and form["From"] == ["+15005550006"]
        otp = re.search(r"\b(\d{6})\b", form["Body"][0]).group(1)
        verify = await client.post("/api/v1/auth/verify", json={"phone": phone, "otp": otp})
        assert verify.status_code == 200
        assert verify.json()["user"]["phone"] == phone


async def test_sms_failure_answers_503_and_allows_an_immediate_retry(
    settings_args: tuple, fake_twilio: FakeTwilio
) -> None:
    app = twilio_app(settings_args, fake_twilio)
    fake_twilio.replies.append((400, {"code": 21211, "message": "Invalid 'To' Phone Number"}))
    phone = new_phone()
    async with serving(app) as client:
        failed = await client.post("/api/v1/auth/otp", json={"phone": phone})
        assert failed.status_code == 503
        assert failed.json()["error"]["code"] == "unavailable"
        # No code was delivered, so no cooldown holds the user back.
        assert (await client.post("/api/v1/auth/otp", json={"phone": phone})).status_code == 202


async def test_otp_requests_per_ip_are_limited(settings_args: tuple) -> None:
    app = app_with(
        settings_args, auth_ip_rate_limit=3, redis_key_prefix=settings_args[2] + "ip-limit:"
    )
    async with serving(app) as client:
        for _ in range(3):
            assert (
                await client.post("/api/v1/auth/otp", json={"phone": new_phone()})
            ).status_code == 202
        refused = await client.post("/api/v1/auth/otp", json={"phone": new_phone()})
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 3500 <= int(refused.headers["retry-after"]) <= 3600


async def test_verify_attempts_per_ip_are_limited(settings_args: tuple) -> None:
    app = app_with(
        settings_args,
        auth_verify_ip_rate_limit=2,
        redis_key_prefix=settings_args[2] + "verify-limit:",
    )
    async with serving(app) as client:
        for _ in range(2):
            response = await client.post(
                "/api/v1/auth/verify", json={"phone": new_phone(), "otp": "000000"}
            )
            assert response.json()["error"]["code"] == "otp_expired"
        refused = await client.post(
            "/api/v1/auth/verify", json={"phone": new_phone(), "otp": "000000"}
        )
        assert refused.status_code == 429
        assert "retry-after" in refused.headers


async def test_session_cookie_is_secure_by_default(settings_args: tuple, outbox_path: Path) -> None:
    from tests.conftest import last_otp

    app = app_with(settings_args, cookie_secure=True)
    phone = new_phone()
    async with serving(app) as client:
        await client.post("/api/v1/auth/otp", json={"phone": phone})
        response = await client.post(
            "/api/v1/auth/verify", json={"phone": phone, "otp": last_otp(outbox_path, phone)}
        )
        attributes = {
            part.strip().lower() for part in response.headers["set-cookie"].split(";")[1:]
        }
        assert {"httponly", "secure", "samesite=lax"} <= attributes
