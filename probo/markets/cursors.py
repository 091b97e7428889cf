"""Cursors of the market lists: the key of the previous page's last row in the list's
own order, so every sort pages through each market exactly once.

`new` keeps the id cursor of every other list (`id:<id>`); `closing` is the last
market's `closes_at` (epoch microseconds) and id; `volume` its `volume_24h` and id;
the watchlist's, when the last market was watched and its id. Each names its list, so
a cursor given to another list (or another sort) is refused, like any cursor this
server did not issue: 400 `validation_error`.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from probo.web import BIGINT_MAX, decode_cursor, encode_cursor, validation_error

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECONDS_MAX = int((datetime(9999, 12, 31, tzinfo=UTC) - EPOCH) / timedelta(microseconds=1))


def _encode(kind: str, first: int, second: int) -> str:
    text = f"{kind}:{first}:{second}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(cursor: str, kind: str, first_min: int, first_max: int) -> tuple[int, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        found, raw_first, raw_second = base64.urlsafe_b64decode(padded).decode().split(":")
        first, second = int(raw_first), int(raw_second)
    except (ValueError, UnicodeDecodeError):
        raise _invalid() from None
    if found != kind or not first_min <= first <= first_max or not 0 < second <= BIGINT_MAX:
        raise _invalid()
    return first, second


def _invalid() -> Exception:
    return validation_error("invalid cursor", status_code=400)


def _microseconds(at: datetime) -> int:
    return (at - EPOCH) // timedelta(microseconds=1)


def _at(microseconds: int) -> datetime:
    return EPOCH + timedelta(microseconds=microseconds)


def encode_market_cursor(sort: str, market_id: int, closes_at: datetime, volume_24h: int) -> str:
    if sort == "closing":
        return _encode("closing", _microseconds(closes_at), market_id)
    if sort == "volume":
        return _encode("volume", volume_24h, market_id)
    return encode_cursor(market_id)


def decode_market_cursor(sort: str, cursor: str | None) -> tuple[object, ...] | None:
    """The key to continue after, in `sort`'s terms; None for the first page."""
    if not cursor:
        return None
    if sort == "closing":
        microseconds, market_id = _decode(cursor, "closing", 0, MICROSECONDS_MAX)
        return (_at(microseconds), market_id)
    if sort == "volume":
        return _decode(cursor, "volume", 0, BIGINT_MAX)
    return (decode_cursor(cursor),)


def encode_watch_cursor(watched_at: datetime, market_id: int) -> str:
    return _encode("watch", _microseconds(watched_at), market_id)


def decode_watch_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    if not cursor:
        return None
    microseconds, market_id = _decode(cursor, "watch", 0, MICROSECONDS_MAX)
    return (_at(microseconds), market_id)
