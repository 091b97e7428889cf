"""Phone numbers: the one normal form (E.164) every other module sees."""

from __future__ import annotations

import re

_E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")
_INDIAN_MOBILE = re.compile(r"^[6-9][0-9]{9}$")
_INDIAN_E164 = re.compile(r"^\+91[6-9][0-9]{9}$")
# Separators people type inside numbers; anything else is an error, not noise.
_SEPARATORS = re.compile(r"[\s\-().]")
PHONE_LENGTH_MAX = 32


class InvalidPhone(ValueError):
    """Not an E.164 number nor a bare 10-digit Indian mobile number."""


def normalise_phone(raw: str) -> str:
    """`+919812345678`, `9812345678`, `98123 45678`, `09812345678` -> `+919812345678`."""
    if len(raw) > PHONE_LENGTH_MAX:
        raise InvalidPhone("phone number is too long")
    compact = _SEPARATORS.sub("", raw)
    if _INDIAN_MOBILE.match(compact):
        return "+91" + compact
    if compact.startswith("0") and _INDIAN_MOBILE.match(compact[1:]):
        return "+91" + compact[1:]
    if _E164.match(compact):
        if compact.startswith("+91") and not _INDIAN_E164.match(compact):
            raise InvalidPhone("an Indian number must be a 10-digit mobile number")
        return compact
    raise InvalidPhone("phone must be E.164 (+919812345678) or a 10-digit Indian mobile number")


def mask_phone(phone: str) -> str:
    """For logs: keep the country code and the last 2 digits."""
    return phone[:3] + "*" * max(0, len(phone) - 5) + phone[-2:]
