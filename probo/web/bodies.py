"""Strict request bodies: JSON types are checked as sent, before a handler runs.

Litestar converts bodies leniently (`"1000"` and `1000.0` become the integer 1000).
Money, prices and quantities must be JSON integers (SPEC §2, §10), so every body is
first decoded strictly against its handler's `data` type: malformed JSON is 400, a
well-formed body of the wrong shape or types is 422, both `validation_error`.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request

from probo.web.errors import validation_error

# One strict decoder per body type: msgspec rebuilds the type's decoding plan on every
# `decode(type=...)` of a union, a cost the order route would pay per request.
_strict_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def _strict_decoder(annotation: Any) -> msgspec.json.Decoder[Any]:
    decoder = _strict_decoders.get(annotation)
    if decoder is None:
        decoder = _strict_decoders[annotation] = msgspec.json.Decoder(annotation, strict=True)
    return decoder


async def check_body_strictly(request: Request) -> None:
    """A `before_request` hook: refuse bodies that do not match the handler's type exactly."""
    data_field = request.route_handler.parsed_data_field
    if data_field is None:
        return
    body = await request.body()
    try:
        _strict_decoder(data_field.annotation).decode(body)
    except msgspec.ValidationError as exc:
        raise validation_error(str(exc), status_code=422) from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise validation_error("request body is not valid JSON", status_code=400) from None
    except RecursionError:
        raise validation_error("request body is nested too deeply", status_code=400) from None
