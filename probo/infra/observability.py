"""Structured JSON logs with a request id, and the HTTP middleware that counts and
times every request. Tokens, OTPs, PANs and account numbers are never logged: the
access log names the route, not the body or the query string."""

from __future__ import annotations

import itertools
import sys
import time
import traceback
import uuid
from contextvars import ContextVar
from typing import TYPE_CHECKING

import msgspec
from litestar.types import ASGIApp, Receive, Scope, Send
from litestar.types import Message as AsgiMessage
from loguru import logger

if TYPE_CHECKING:
    from loguru import Message

from probo.infra import metrics

REQUEST_ID_HEADER = b"x-request-id"
REQUEST_ID_LENGTH_MAX = 64
request_id_var: ContextVar[str] = ContextVar("request_id", default="-")


def _json_line(message: Message) -> None:
    record = message.record
    line: dict[str, object] = {
        "time": record["time"].isoformat(timespec="milliseconds"),
        "level": record["level"].name,
        "message": record["message"],
        "logger": record["name"],
        **record["extra"],
    }
    if record["exception"] is not None:
        line["exception"] = "".join(traceback.format_exception(*record["exception"]))
    sys.stderr.write(msgspec.json.encode(line, enc_hook=str).decode() + "\n")


def configure_logging(level: str) -> None:
    """One JSON object per line on stderr, with the request id of the request in hand."""
    logger.remove()
    # Only exception types and frames are formatted, never local variables (secrets).
    logger.add(_json_line, level=level.upper(), backtrace=False, diagnose=False)
    logger.configure(
        patcher=lambda record: record["extra"].setdefault("request_id", request_id_var.get())
    )


# Generated ids: a random prefix per process and a counter (cheaper than a uuid4 each).
_REQUEST_ID_PREFIX = uuid.uuid4().hex[:12] + "-"
_request_numbers = itertools.count(1)


def _incoming_request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER:
            candidate = value.decode("latin-1")[:REQUEST_ID_LENGTH_MAX]
            if candidate.replace("-", "").isalnum():
                return candidate
    return f"{_REQUEST_ID_PREFIX}{next(_request_numbers):x}"


def request_context_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status_code = 500

        async def send_with_id(message: AsgiMessage) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER, request_id.encode()),
                ]
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("path_template") or "unmatched"
            method = str(scope.get("method", ""))
            metrics.observe_request(method, route, status_code, elapsed)
            if status_code >= 500:
                logger.warning(
                    "{} {} -> {} in {:.1f} ms", method, route, status_code, elapsed * 1000
                )
            request_id_var.reset(token)

    return middleware
