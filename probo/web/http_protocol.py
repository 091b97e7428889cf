"""The HTTP/1.1 protocol `probo serve` runs: uvicorn's httptools protocol with a bound
on the request head, and its own refusals in the API's error shape (SPEC §9).

Everything here happens before the application sees a request, so its error handlers
cannot shape these answers:

- a request head (request line and headers) over REQUEST_HEAD_BYTES_MAX answers 431
  `headers_too_large`: without a bound, one client could make the server buffer and
  parse megabytes of headers per request;
- a request the parser cannot read (a malformed request line or header) answers 400
  `validation_error`, instead of uvicorn's plain-text "Invalid HTTP request received.".

Either way the connection is closed: its byte stream cannot be trusted any more. The
answer is followed by the end of our side of the stream, and what the client still
sends is read and dropped for up to LINGER_S before the socket closes ("lingering
close", RFC 9112 §9.6): closing a socket with unread input makes the kernel reset the
connection, dropping whatever of the answer it has not sent yet, and some clients
discard what they received once the reset arrives.
"""

from __future__ import annotations

import http

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Browsers send a few KiB of headers, most of it cookies; the proxies and servers one
# meets in front of or instead of us allow 8-16 KiB per header line and 16-64 KiB per
# head (nginx 4 x 8 KiB buffers, Node 16 KiB, Kestrel and Cloudflare 32 KiB). 32 KiB
# admits every head that passed those, and keeps what one connection makes us hold
# and parse small.
REQUEST_HEAD_BYTES_MAX = 32 * 1024
# A parsed header line's bytes beyond its name and value: ": " and CRLF.
HEADER_LINE_OVERHEAD_BYTES = 4
# How long a refused connection's remaining input is read and dropped before closing.
LINGER_S = 2.0


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing an oversized head."""


def _error_response(
    status: int, code: str, message: str, default_headers: list[tuple[bytes, bytes]]
) -> bytes:
    body = msgspec.json.encode({"error": {"code": code, "message": message}})
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}".encode()]
    lines += [name + b": " + value for name, value in default_headers]
    lines += [
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode(),
        b"x-content-type-options: nosniff",
        b"connection: close",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class ProboHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, bounding each request head to REQUEST_HEAD_BYTES_MAX.

    The head is measured twice. As parsed: the URL and every complete header line, which
    catches a whole oversized head arriving in one read. As received: the bytes read
    while a head is still incomplete, which catches one that never completes, such as
    a single endless header the parser would otherwise buffer whole before reporting it.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._awaiting_head = True
        self._head_bytes_received = 0
        self._head_bytes_parsed = 0
        self._head_too_large = False
        self._refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: the input is dropped (see the module docstring)
        if self._awaiting_head:
            self._head_bytes_received += len(data)
        super().data_received(data)
        # Still without a complete head, all that was counted is head.
        if (
            self._awaiting_head
            and self._head_bytes_received > REQUEST_HEAD_BYTES_MAX
            and not self._refused
        ):
            self._head_too_large = True
            self.send_400_response("")

    def on_url(self, url: bytes) -> None:
        self._parsed(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed(len(name) + len(value) + HEADER_LINE_OVERHEAD_BYTES)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._head_bytes_received = self._head_bytes_parsed = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._awaiting_head = True  # what follows on this connection is the next head
        super().on_message_complete()

    def _parsed(self, size: int) -> None:
        self._head_bytes_parsed += size
        if self._head_bytes_parsed > REQUEST_HEAD_BYTES_MAX:
            self._head_too_large = True
            # uvicorn answers the resulting parser error with send_400_response.
            raise _HeadTooLarge

    def send_400_response(self, msg: str) -> None:
        """Refuse the request in the API's error shape, then linger and close."""
        if self._head_too_large:
            response = _error_response(
                431,
                "headers_too_large",
                f"the request line and headers exceed {REQUEST_HEAD_BYTES_MAX} bytes",
                self.server_state.default_headers,
            )
        else:
            response = _error_response(
                400,
                "validation_error",
                "malformed HTTP request",
                self.server_state.default_headers,
            )
        self._refused = True
        self.transport.write(response)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self._close_after_linger)

    def _close_after_linger(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()
