"""Bursts larger than the connection pools (SPEC §15): a burst of logins within the
rate limits waits its turn for Redis connections and gets no 503 while Redis is up; a
pool still full after its bounded wait answers a "busy" 503, not an outage one."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest

from probo.app import create_app
from probo.auth import TokenIssuer
from probo.infra import db
from probo.services import services_of
from tests.conftest import assert_error, bearer, make_settings, new_phone, serving
from tests.raw_http import address, read_response, request

# Far more requests at once than the Redis pool has connections, so most of them wait.
LOGINS_AT_ONCE = 1_000


async def _connected(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A keep-alive connection the server has accepted and answered once."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request("GET", "/healthz"))
    assert (await read_response(reader)).status == 200
    return reader, writer


async def test_a_thousand_otp_requests_at_once_are_all_sent_none_refused(
    server_urls: tuple[str, str], side_database_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox.jsonl"
    # make_settings raises the per-IP limits; each phone asks once, so the per-phone
    # cooldown and hourly limit hold as they are.
    settings = make_settings(side_database_url, server_urls[1], redis_prefix + "burst:", outbox)
    phones = [new_phone() for _ in range(LOGINS_AT_ONCE)]
    async with serving(create_app(settings)) as client:
        host, port = address(client)
        connections = await asyncio.gather(*(_connected(host, port) for _ in phones))
        # The server holds every connection open and idle. Every request is written
        # before it gets another turn, so it reads them all at once and they reach the
        # Redis pool together: a real burst, which an HTTP client library would pace.
        for (_, writer), phone in zip(connections, phones, strict=True):
            body = json.dumps({"phone": phone}).encode()
            writer.write(request("POST", "/api/v1/auth/otp", body=body))
        try:
            responses = await asyncio.gather(*(read_response(r) for r, _ in connections))
        finally:
            for _, writer in connections:
                writer.close()
    statuses = Counter(response.status for response in responses)
    refused = [response.body for response in responses if response.status != 202]
    assert statuses == {202: LOGINS_AT_ONCE}, refused[:3]
    # Every code really went out: exactly one whole outbox line per phone.
    sent = [json.loads(line)["to"] for line in outbox.read_text().splitlines()]
    assert sorted(sent) == sorted(phones)


async def test_a_database_pool_full_past_its_wait_answers_busy(
    server_urls: tuple[str, str],
    side_database_url: str,
    redis_prefix: str,
    outbox_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(db, "POOL_ACQUIRE_TIMEOUT_S", 0.1)
    settings = make_settings(
        side_database_url, server_urls[1], redis_prefix, outbox_path, database_pool_max=2
    )
    token, _ = TokenIssuer(settings.jwt_secret, 3600).issue(1, "user")
    app = create_app(settings)
    async with serving(app) as client:
        pool = services_of(app).pool
        held = [await pool.acquire() for _ in range(pool.get_max_size())]
        try:
            busy = await client.get("/api/v1/me", headers=bearer(token))
        finally:
            for conn in held:
                await pool.release(conn)
        metrics = (await client.get("/metrics")).text
    assert_error(busy, 503, "unavailable")
    assert "busy" in busy.json()["error"]["message"]
    assert busy.headers["retry-after"] == "1"
    assert 'probo_pool_exhausted_total{pool="postgres"}' in metrics
