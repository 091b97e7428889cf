"""Structured JSON logs with a request id, and the HTTP middleware that counts and
times every request. Tokens, OTPs, PANs and account numbers are never logged: the
access log names the route, not the body or the query string."""

from __future__ import annotations

import sys
import time
import uuid
from contextvars import ContextVar

from litestar.types import ASGIApp, Message, Receive, Scope, Send
from loguru import logger

from probo import metrics

REQUEST_ID_HEADER = b"x-request-id"
REQUEST_ID_LENGTH_MAX = 64
request_id_var: ContextVar[str] = ContextVar("request_id", default="-")


def configure_logging(level: str, *, json: bool = True) -> None:
    logger.remove()
    # diagnose=False: tracebacks must not print local variables (they may hold secrets).
    logger.add(sys.stderr, level=level.upper(), serialize=json, backtrace=False, diagnose=False)
    logger.configure(patcher=lambda record: record["extra"].setdefault("request_id", request_id_var.get()))


def _incoming_request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER:
            candidate = value.decode("latin-1")[:REQUEST_ID_LENGTH_MAX]
            if candidate.replace("-", "").isalnum():
                return candidate
    return uuid.uuid4().hex


def request_context_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status_code = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("path_template") or "unmatched"
            method = scope.get("method", "")
            metrics.HTTP_REQUESTS.labels(method, route, str(status_code)).inc()
            metrics.HTTP_LATENCY.labels(method, route).observe(elapsed)
            if status_code >= 500:
                logger.warning("{} {} -> {} in {:.1f} ms", method, route, status_code, elapsed * 1000)
            request_id_var.reset(token)

    return middleware
