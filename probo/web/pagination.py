"""Opaque cursors for `{"items", "next_cursor"}` lists, newest first by id."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Annotated, TypeVar

from litestar.params import Parameter

from probo.web.errors import validation_error
from probo.web.storable import BIGINT_MAX

T = TypeVar("T")

LIMIT_DEFAULT = 50
LIMIT_MAX = 200
CURSOR_LENGTH_MAX = 64
CURSOR_PATTERN = r"^[A-Za-z0-9_-]*$"  # unpadded URL-safe base64, as encode_cursor writes it

Limit = Annotated[
    int, Parameter(ge=1, le=LIMIT_MAX, default=LIMIT_DEFAULT, description="page size")
]
Cursor = Annotated[
    str | None,
    Parameter(pattern=CURSOR_PATTERN, max_length=CURSOR_LENGTH_MAX, description="from next_cursor"),
]


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The id to continue below, or None for the first page."""
    if cursor is None or cursor == "":
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode()).decode()
        prefix, _, raw_id = text.partition(":")
        last_id = int(raw_id)
    except (ValueError, UnicodeDecodeError):
        raise validation_error("invalid cursor", status_code=400) from None
    if prefix != "id" or not 0 < last_id <= BIGINT_MAX:  # ids are Postgres bigints
        raise validation_error("invalid cursor", status_code=400)
    return last_id


def page(rows: list[T], limit: int, id_of: Callable[[T], int]) -> tuple[list[T], str | None]:
    """Cut `rows` (fetched with `limit + 1`) to a page and its next cursor, if any is left."""
    if len(rows) <= limit:
        return rows, None
    kept = rows[:limit]
    return kept, encode_cursor(id_of(kept[-1]))
