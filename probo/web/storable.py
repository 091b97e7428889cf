"""What Postgres can store, as wire constraints: every client text and integer that may
reach a table is checked against these at the edge, so a value that passes validation
can never make a statement, or a ledger batch the writer commits, fail later.

Postgres text (UTF-8) refuses U+0000, and UTF-8 cannot encode a lone surrogate
(U+D800..U+DFFF): `STORABLE_TEXT_PATTERN` excludes both. It is written with escapes, so
msgspec (Python `re`) and an OpenAPI reader (ECMA regex) read the same rule. Bodies use
the msgspec type `StorableText`, query parameters `storable_text_parameter`.

The published document states only the U+0000 half (`PUBLISHED_TEXT_PATTERN`): JSON
text cannot carry a lone surrogate to begin with (msgspec refuses the escape, query
strings are decoded with replacement characters), and validators built on Unicode-aware
regex engines (Rust's, in schemathesis) refuse any pattern that names one.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar.params import Parameter, ParameterKwarg

STORABLE_TEXT_PATTERN = r"^[^\x00\ud800-\udfff]*$"
PUBLISHED_TEXT_PATTERN = r"^[^\x00]*$"
STORABLE_TEXT_DESCRIPTION = "text Postgres can store: no U+0000, no lone surrogates"
# litestar adds the fields under "extra" to the OpenAPI schema, over its own.
_PUBLISHED = {"pattern": PUBLISHED_TEXT_PATTERN}
BIGINT_MAX = 2**63 - 1  # every id is a Postgres bigint

StorableText = Annotated[
    str,
    msgspec.Meta(
        pattern=STORABLE_TEXT_PATTERN,
        description=STORABLE_TEXT_DESCRIPTION,
        extra_json_schema={"extra": _PUBLISHED},
    ),
]
Id = Annotated[int, msgspec.Meta(ge=1, le=BIGINT_MAX)]


def storable_text_parameter(*, max_length: int, description: str | None = None) -> ParameterKwarg:
    """A query parameter holding client text: the same rule as `StorableText`."""
    return Parameter(
        pattern=STORABLE_TEXT_PATTERN,
        max_length=max_length,
        description=description or STORABLE_TEXT_DESCRIPTION,
        schema_extra=_PUBLISHED,
    )
