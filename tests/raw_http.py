"""HTTP/1.1 over a bare TCP connection, for what an HTTP client library would not
send: requests written all at once, oversized or malformed heads."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx

RESPONSE_HEAD_BYTES_MAX = 64 * 1024
READ_TIMEOUT_S = 30.0


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def address(client: httpx.AsyncClient) -> tuple[str, int]:
    """(host, port) of the server behind a `serving` client."""
    url = client.base_url
    assert url.host and url.port
    return url.host, url.port


def request(
    method: str,
    path: str,
    *,
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
    host: str = "127.0.0.1",
) -> bytes:
    """One request's bytes; `headers` come after Host (and Content-Length, given a body)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers or []]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def read_response(reader: asyncio.StreamReader) -> RawResponse:
    """The next response on the connection (bodies with Content-Length, as ours have)."""
    async with asyncio.timeout(READ_TIMEOUT_S):
        head = await reader.readuntil(b"\r\n\r\n")
        assert len(head) <= RESPONSE_HEAD_BYTES_MAX
        status_line, *header_lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return RawResponse(int(status_line.split(" ", 2)[1]), headers, body)


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """Whether the server closes the connection (EOF, or a reset) instead of waiting
    for another request on it."""
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            return await reader.read(1) == b""
    except ConnectionResetError:
        return True
