"""HTTP plumbing shared by every package's routes: the error contract, strict bodies,
pagination, the published OpenAPI document, the HTTP protocol `probo serve` runs, and
the rule for what client values Postgres can store."""

from probo.web.bodies import check_body_strictly
from probo.web.errors import (
    BUSY_RETRY_AFTER_S,
    ApiError,
    error_body,
    exception_handlers,
    forbidden,
    not_found,
    rate_limited,
    redis_required,
    unauthorized,
    unavailable,
    validation_error,
)
from probo.web.http_protocol import REQUEST_HEAD_BYTES_MAX, ProboHttpProtocol
from probo.web.openapi import (
    PublishedOpenAPIConfig,
    StrictStructSchemaPlugin,
    error_responses,
    refuse_unknown_document_paths,
    repeat_response,
)
from probo.web.pagination import Cursor, Limit, decode_cursor, encode_cursor, page
from probo.web.storable import BIGINT_MAX, Id, StorableText, storable_text_parameter

__all__ = [
    "BIGINT_MAX",
    "BUSY_RETRY_AFTER_S",
    "REQUEST_HEAD_BYTES_MAX",
    "ApiError",
    "Cursor",
    "Id",
    "Limit",
    "ProboHttpProtocol",
    "PublishedOpenAPIConfig",
    "StorableText",
    "StrictStructSchemaPlugin",
    "check_body_strictly",
    "decode_cursor",
    "encode_cursor",
    "error_body",
    "error_responses",
    "exception_handlers",
    "forbidden",
    "not_found",
    "page",
    "rate_limited",
    "redis_required",
    "refuse_unknown_document_paths",
    "repeat_response",
    "storable_text_parameter",
    "unauthorized",
    "unavailable",
    "validation_error",
]
