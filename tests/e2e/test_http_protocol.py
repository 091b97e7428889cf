"""What the server answers before the application sees a request (probo/web/http_protocol.py):
oversized request heads get 431 and malformed requests 400, both in the error shape
and with the connection closed; requests within the bound, kept alive or pipelined,
are served as before. Raw TCP, since an HTTP client library would refuse to send
most of these."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from probo.web import REQUEST_HEAD_BYTES_MAX
from tests.raw_http import RawResponse, address, closed_by_server, read_response, request

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
MEBIBYTE = 1024 * 1024
# Well within the bound, yet big enough that three of them together would not be.
LARGE_COOKIE = "session=" + "c" * (REQUEST_HEAD_BYTES_MAX * 2 // 3)


@pytest_asyncio.fixture
async def connection(client: httpx.AsyncClient) -> AsyncIterator[Connection]:
    reader, writer = await asyncio.open_connection(*address(client))
    try:
        yield reader, writer
    finally:
        writer.close()


def assert_refused(response: RawResponse, status: int, code: str) -> None:
    assert response.status == status, response.body
    assert response.headers["content-type"] == "application/json"
    assert response.headers["connection"] == "close"
    assert response.headers["x-content-type-options"] == "nosniff"
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


OVERSIZED_HEADS = {
    "many headers": request(
        "GET", "/healthz", headers=[(f"X-Filler-{i}", "f" * 40) for i in range(2_000)]
    ),
    "one huge header": request("GET", "/healthz", headers=[("X-Huge", "h" * 100_000)]),
    "a huge url": request("GET", "/api/v1/markets?q=" + "u" * 100_000),
    "ten megabytes of headers": request(
        "GET",
        "/healthz",
        headers=[(f"X-Filler-{i}", "f" * 1_000) for i in range(10 * MEBIBYTE // 1_000)],
    ),
    # Never completes: the parser alone would wait for the rest of the header forever.
    "an endless header": b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: "
    + b"e" * MEBIBYTE,
}


@pytest.mark.parametrize("head", OVERSIZED_HEADS.values(), ids=OVERSIZED_HEADS.keys())
async def test_an_oversized_head_is_refused_431_and_closed(
    connection: Connection, head: bytes
) -> None:
    reader, writer = connection
    writer.write(head)
    assert_refused(await read_response(reader), 431, "headers_too_large")
    assert await closed_by_server(reader)


MALFORMED = {
    "garbage request line": b"GARBAGE\r\n\r\n",
    "bad protocol name": b"GET /healthz HTXP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "space in the target": b"GET /health z HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "header without a colon": b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nno colon\r\n\r\n",
    "non-ascii path": "GET /héalthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode(),
}


@pytest.mark.parametrize("head", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_request_is_refused_400_in_the_error_shape_and_closed(
    connection: Connection, head: bytes
) -> None:
    reader, writer = connection
    writer.write(head)
    assert_refused(await read_response(reader), 400, "validation_error")
    assert await closed_by_server(reader)


async def test_requests_within_the_bound_are_served_on_one_kept_alive_connection(
    connection: Connection,
) -> None:
    # Each head alone fits; together they would not, so the bound is per request.
    reader, writer = connection
    for _ in range(3):
        writer.write(request("GET", "/healthz", headers=[("Cookie", LARGE_COOKIE)]))
        response = await read_response(reader)
        assert response.status == 200, response.body
        assert response.json() == {"status": "ok"}
        assert response.headers.get("connection") != "close"
    body = b'{"phone": "not a phone"}'
    writer.write(request("POST", "/api/v1/auth/otp", body=body))
    assert (await read_response(reader)).status == 422  # the app's own refusal
    writer.write(request("GET", "/healthz"))
    assert (await read_response(reader)).status == 200


async def test_pipelined_requests_within_the_bound_are_all_answered(
    connection: Connection,
) -> None:
    reader, writer = connection
    one = request("GET", "/healthz", headers=[("Cookie", LARGE_COOKIE)])
    writer.write(one * 3)  # in one write: the server reads them together
    for _ in range(3):
        assert (await read_response(reader)).status == 200


async def test_the_client_library_still_works(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"Cookie": LARGE_COOKIE})
    assert response.status_code == 200
