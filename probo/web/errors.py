"""The uniform error contract: `{"error": {"code", "message"}}` for every failure.

Services raise `ApiError` (or a subclass carrying a fixed code); the handlers here turn
those, and every framework-level failure, into that shape. An unexpected exception is
logged with its request id and answered 500 `internal_error`: that is a bug to fix,
never an expected path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from loguru import logger
from redis.exceptions import MaxConnectionsError

from probo.infra import (
    CONFLICT_ERRORS,
    OUTAGE_RETRY_AFTER_S,
    REDIS_UNAVAILABLE_ERRORS,
    UNAVAILABLE_ERRORS,
    PoolExhausted,
)

# What a client is asked to wait after a "busy" refusal: a full pool drains in moments.
BUSY_RETRY_AFTER_S = 1


class ApiError(Exception):
    """An expected rejection: an HTTP status, a stable code and a human message."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.details = details


def validation_error(message: str, status_code: int = 422) -> ApiError:
    return ApiError(status_code, "validation_error", message)


def not_found(what: str = "resource") -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def unauthorized(message: str = "authentication required") -> ApiError:
    return ApiError(401, "unauthorized", message)


def forbidden(message: str = "forbidden") -> ApiError:
    return ApiError(403, "forbidden", message)


def unavailable(message: str, retry_after_s: int | None = None) -> ApiError:
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return ApiError(503, "unavailable", message, headers=headers)


def rate_limited(retry_after_s: int, message: str = "too many requests") -> ApiError:
    return ApiError(
        429, "rate_limited", message, headers={"Retry-After": str(max(1, retry_after_s))}
    )


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error.update(details)
    return {"error": error}


def _response(
    status_code: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    details: dict[str, Any] | None = None,
) -> Response[dict[str, Any]]:
    return Response(
        content=error_body(code, message, details),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def _api_error_handler(_: Request, exc: ApiError) -> Response[dict[str, Any]]:
    return _response(exc.status_code, exc.code, exc.message, exc.headers, exc.details)


def _validation_handler(_: Request, exc: ValidationException) -> Response[dict[str, Any]]:
    message = "invalid request"
    if isinstance(exc.extra, list) and exc.extra:
        parts = []
        for item in exc.extra[:5]:
            if isinstance(item, dict):
                key = item.get("key")
                text = item.get("message", "")
                parts.append(f"{key}: {text}" if key else str(text))
        if parts:
            message = "; ".join(parts)
    elif exc.detail:
        message = str(exc.detail)
    return _response(400, "validation_error", message)


_CODE_BY_STATUS = {
    400: "validation_error",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}


def _http_handler(_: Request, exc: HTTPException) -> Response[dict[str, Any]]:
    status_code = exc.status_code
    if status_code >= 500:
        logger.opt(exception=exc).error("server error {}", status_code)
        code = "unavailable" if status_code == 503 else "internal_error"
        return _response(
            status_code, code, "internal error" if code == "internal_error" else str(exc.detail)
        )
    code = _CODE_BY_STATUS.get(status_code, "bad_request")
    headers = dict(exc.headers) if exc.headers else None
    return _response(status_code, code, str(exc.detail or code), headers)


def _database_unavailable_handler(request: Request, exc: Exception) -> Response[dict[str, Any]]:
    logger.warning(
        "database unavailable on {} {}: {}", request.method, request.url.path, type(exc).__name__
    )
    return _response(
        503,
        "unavailable",
        "the service is temporarily unavailable; retry shortly",
        {"Retry-After": "2"},
    )


def _pool_exhausted_handler(request: Request, exc: PoolExhausted) -> Response[dict[str, Any]]:
    # Overload, not an outage: the database answers, every connection to it is busy.
    logger.warning("{} on {} {}", exc, request.method, request.url.path)
    return _response(
        503,
        "unavailable",
        "the service is busy; retry in a moment",
        {"Retry-After": str(BUSY_RETRY_AFTER_S)},
    )


def _conflict_handler(request: Request, exc: Exception) -> Response[dict[str, Any]]:
    # Postgres aborted this transaction to resolve a conflict with another; nothing of
    # it was applied, so the client may simply retry.
    logger.warning(
        "transaction conflict on {} {}: {}", request.method, request.url.path, type(exc).__name__
    )
    return _response(
        503, "unavailable", "a concurrent request conflicted; retry", {"Retry-After": "1"}
    )


def _bad_text_handler(_: Request, exc: Exception) -> Response[dict[str, Any]]:
    # Postgres text cannot hold NUL and some code points; they only come from the client.
    return _response(422, "validation_error", "text contains characters that cannot be stored")


def _foreign_key_handler(
    request: Request, exc: asyncpg.ForeignKeyViolationError
) -> Response[dict[str, Any]]:
    # A valid token whose user is gone (a database reset) names a user no row has.
    if (exc.constraint_name or "").endswith("user_id_fkey"):
        return _response(401, "unauthorized", "this session's user no longer exists")
    return _internal_handler(request, exc)


def _internal_handler(request: Request, exc: Exception) -> Response[dict[str, Any]]:
    logger.opt(exception=exc).error("unhandled error on {} {}", request.method, request.url.path)
    return _response(HTTP_500_INTERNAL_SERVER_ERROR, "internal_error", "internal error")


# Each handler takes its own exception type: the mapping is typed loosely on purpose.
exception_handlers: dict[type[BaseException], Callable[..., Response[dict[str, Any]]]] = {
    ApiError: _api_error_handler,
    ValidationException: _validation_handler,
    NotAuthorizedException: _http_handler,
    PermissionDeniedException: _http_handler,
    NotFoundException: _http_handler,
    HTTPException: _http_handler,
    **{error: _database_unavailable_handler for error in UNAVAILABLE_ERRORS},
    PoolExhausted: _pool_exhausted_handler,
    **{error: _conflict_handler for error in CONFLICT_ERRORS},
    asyncpg.CharacterNotInRepertoireError: _bad_text_handler,
    asyncpg.UntranslatableCharacterError: _bad_text_handler,
    asyncpg.ForeignKeyViolationError: _foreign_key_handler,
    Exception: _internal_handler,
}


@contextmanager
def redis_required(what: str) -> Iterator[None]:
    """Run a block that cannot work without Redis: a full pool answers 503 "busy", an
    unreachable Redis 503 "unavailable"."""
    try:
        yield
    except MaxConnectionsError as error:
        logger.warning("redis pool exhausted during {}: {}", what, error)
        raise unavailable(
            f"{what} is busy; try again in a moment", retry_after_s=BUSY_RETRY_AFTER_S
        ) from None
    except REDIS_UNAVAILABLE_ERRORS:
        raise unavailable(
            f"{what} is temporarily unavailable", retry_after_s=OUTAGE_RETRY_AFTER_S
        ) from None
