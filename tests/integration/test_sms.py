"""SMS providers: the outbox file under concurrency, and Twilio against a stand-in server.

The Twilio stand-in is a real HTTP/1.1 server on 127.0.0.1 so the tests cover httpx's
actual wire behaviour (basic auth, form encoding, connection errors), not a mock.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from loguru import logger

from probo.auth import sms
from probo.auth.sms import (
    ConsoleSms,
    OutboxSms,
    SmsError,
    SmsProvider,
    TwilioSms,
    build_sms_provider,
)
from tests.fakes import FakeTwilio

ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
AUTH_TOKEN = "test-auth-token-7f3a9c"
FROM_NUMBER = "+15005550006"
TO_NUMBER = "+919812345678"
OTP = "048213"
BODY = f"Your Probo login code is {OTP}. It expires in 5 minutes."


@pytest.fixture
def fast_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sms, "SEND_RETRY_BACKOFF_S", 0.01)


@pytest.fixture
def captured_logs() -> Iterator[list[str]]:
    lines: list[str] = []
    sink_id = logger.add(lambda message: lines.append(str(message)), level="DEBUG")
    yield lines
    logger.remove(sink_id)


def twilio_for(fake: FakeTwilio, timeout_s: float = 5.0) -> TwilioSms:
    return TwilioSms(
        ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, base_url=fake.base_url, timeout_s=timeout_s
    )


# Outbox


async def test_outbox_concurrent_sends_write_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "sms-outbox.jsonl"
    outbox = OutboxSms(path)
    # A long body makes a torn or interleaved write far more likely to show up.
    padding = "x" * 5000
    await asyncio.gather(
        *(
            outbox.send(f"+9198000000{index:02d}", f"code {index:06d} {padding}", f"{index:06d}")
            for index in range(50)
        )
    )
    await outbox.close()

    lines = path.read_text().splitlines()
    assert len(lines) == 50
    records = [json.loads(line) for line in lines]
    assert {record["otp"] for record in records} == {f"{index:06d}" for index in range(50)}
    for record in records:
        assert set(record) == {"to", "body", "otp", "sent_at"}
        assert record["to"] == f"+9198000000{int(record['otp']):02d}"
        assert record["body"] == f"code {record['otp']} {padding}"
        sent_at = datetime.fromisoformat(record["sent_at"])
        assert sent_at.utcoffset() is not None and sent_at.utcoffset().total_seconds() == 0


async def test_outbox_appends_to_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "sms-outbox.jsonl"
    path.write_text('{"earlier": true}\n')
    await OutboxSms(path).send(TO_NUMBER, BODY, OTP)
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {"earlier": True}
    assert json.loads(lines[1])["otp"] == OTP


async def test_outbox_unwritable_path_raises_sms_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with pytest.raises(SmsError):
        await OutboxSms(blocker / "sms-outbox.jsonl").send(TO_NUMBER, BODY, OTP)


# Console


async def test_console_logs_message_with_recipient(captured_logs: list[str]) -> None:
    records: list[dict[str, object]] = []
    sink_id = logger.add(lambda message: records.append(message.record["extra"]), level="INFO")
    try:
        await ConsoleSms().send(TO_NUMBER, "braces {are} fine " + BODY, OTP)
    finally:
        logger.remove(sink_id)
    assert any(OTP in line and TO_NUMBER in line and "{are}" in line for line in captured_logs)
    assert {"to": TO_NUMBER} in records


# Twilio


async def test_twilio_success_sends_expected_request(fake_twilio: FakeTwilio) -> None:
    fake_twilio.replies.append((201, {"sid": "SM123", "status": "queued"}))
    twilio = twilio_for(fake_twilio)
    try:
        await twilio.send(TO_NUMBER, BODY, OTP)
    finally:
        await twilio.close()

    assert len(fake_twilio.requests) == 1
    request = fake_twilio.requests[0]
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    expected_credentials = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {expected_credentials}"
    assert request.headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert request.form() == {"To": [TO_NUMBER], "From": [FROM_NUMBER], "Body": [BODY]}


async def test_twilio_client_error_names_code_not_otp(
    fake_twilio: FakeTwilio, captured_logs: list[str]
) -> None:
    fake_twilio.replies.append(
        (400, {"code": 21211, "message": f"Invalid 'To' Phone Number {OTP}", "status": 400})
    )
    twilio = twilio_for(fake_twilio)
    try:
        with pytest.raises(SmsError) as raised:
            await twilio.send(TO_NUMBER, BODY, OTP)
    finally:
        await twilio.close()

    message = str(raised.value)
    assert "21211" in message and "400" in message
    assert OTP not in message and AUTH_TOKEN not in message
    # A 4xx other than 429 is our fault: no retry.
    assert len(fake_twilio.requests) == 1
    assert not any(OTP in line or AUTH_TOKEN in line for line in captured_logs)


async def test_twilio_server_error_then_success_retries(
    fake_twilio: FakeTwilio, fast_retry: None, captured_logs: list[str]
) -> None:
    fake_twilio.replies += [(500, {"code": 20500, "message": "Internal"}), (201, {"sid": "SM9"})]
    twilio = twilio_for(fake_twilio)
    try:
        await twilio.send(TO_NUMBER, BODY, OTP)
    finally:
        await twilio.close()

    assert len(fake_twilio.requests) == 2
    assert fake_twilio.requests[1].form()["Body"] == [BODY]
    assert any("retrying" in line for line in captured_logs)
    assert not any(OTP in line or AUTH_TOKEN in line for line in captured_logs)


async def test_twilio_rate_limited_then_success_retries(
    fake_twilio: FakeTwilio, fast_retry: None
) -> None:
    fake_twilio.replies += [(429, {"code": 20429}), (201, {"sid": "SM9"})]
    twilio = twilio_for(fake_twilio)
    try:
        await twilio.send(TO_NUMBER, BODY, OTP)
    finally:
        await twilio.close()
    assert len(fake_twilio.requests) == 2


async def test_twilio_retries_are_bounded(fake_twilio: FakeTwilio, fast_retry: None) -> None:
    fake_twilio.replies += [(503, {})] * 5
    twilio = twilio_for(fake_twilio)
    try:
        with pytest.raises(SmsError, match="503"):
            await twilio.send(TO_NUMBER, BODY, OTP)
    finally:
        await twilio.close()
    assert len(fake_twilio.requests) == sms.SEND_TRIES_MAX == 2


async def test_twilio_timeout_raises_sms_error(fake_twilio: FakeTwilio, fast_retry: None) -> None:
    fake_twilio.stall = True
    twilio = twilio_for(fake_twilio, timeout_s=0.2)
    try:
        with pytest.raises(SmsError, match="Timeout") as raised:
            await twilio.send(TO_NUMBER, BODY, OTP)
    finally:
        await twilio.close()
    assert OTP not in str(raised.value)
    assert len(fake_twilio.requests) == 2


async def test_twilio_sends_wait_for_a_free_connection_then_give_up_without_retrying(
    fake_twilio: FakeTwilio,
) -> None:
    fake_twilio.stall = True
    twilio = TwilioSms(
        ACCOUNT_SID,
        AUTH_TOKEN,
        FROM_NUMBER,
        base_url=fake_twilio.base_url,
        connections_max=1,
        pool_wait_s=0.1,
    )
    first = asyncio.create_task(twilio.send(TO_NUMBER, BODY, OTP))
    try:
        for _ in range(500):  # until the first send holds the only connection
            if fake_twilio.requests:
                break
            await asyncio.sleep(0.01)
        with pytest.raises(SmsError, match="no free connection") as raised:
            await twilio.send(TO_NUMBER, BODY, OTP)
    finally:
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        await twilio.close()
    assert OTP not in str(raised.value)
    # The second send never reached Twilio, and was not tried again.
    assert len(fake_twilio.requests) == 1


async def test_twilio_closed_port_raises_sms_error(fast_retry: None) -> None:
    # Bind then release a port so nothing is listening on it.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    twilio = TwilioSms(
        ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, base_url=f"http://127.0.0.1:{port}", timeout_s=2.0
    )
    try:
        with pytest.raises(SmsError, match="network error") as raised:
            await twilio.send(TO_NUMBER, BODY, OTP)
    finally:
        await twilio.close()
    assert OTP not in str(raised.value) and AUTH_TOKEN not in str(raised.value)
    assert raised.value.__cause__ is None


# Factory


async def test_build_sms_provider_picks_each_provider(tmp_path: Path) -> None:
    common = {
        "outbox_path": tmp_path / "outbox.jsonl",
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
        "twilio_from": FROM_NUMBER,
        "twilio_base_url": "http://127.0.0.1:9",
    }
    outbox = build_sms_provider("outbox", **common)
    console = build_sms_provider("console", **common)
    twilio = build_sms_provider("twilio", **common)
    try:
        assert isinstance(outbox, OutboxSms) and outbox.path == tmp_path / "outbox.jsonl"
        assert isinstance(console, ConsoleSms)
        assert isinstance(twilio, TwilioSms)
        for provider in (outbox, console, twilio):
            assert isinstance(provider, SmsProvider)
    finally:
        await twilio.close()
    with pytest.raises(ValueError):
        build_sms_provider("carrier-pigeon", **common)
    with pytest.raises(ValueError):
        build_sms_provider("twilio", **{**common, "twilio_auth_token": ""})
