"""Wire types of KYC: the request, the masked view users see, the admin's full view."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from probo.web import StorableText

KycStatus = Literal["NONE", "PENDING", "VERIFIED", "REJECTED"]

# The shapes the service accepts before it normalises (probo/kyc/service.py): case and
# spaces around are forgiven, spaces inside an account number too. Each excludes U+0000.
Pan = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^\s*[A-Za-z]{5}[0-9]{4}[A-Za-z]\s*$",
        max_length=32,
        description="AAAAA9999A, any case",
    ),
]
Ifsc = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^\s*[A-Za-z]{4}0[A-Za-z0-9]{6}\s*$",
        max_length=32,
        description="AAAA0XXXXXX, any case",
    ),
]
BankAccount = Annotated[
    str,
    msgspec.Meta(pattern=r"^\s*(?:[0-9]\s*){9,18}$", max_length=64, description="9 to 18 digits"),
]
PersonName = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^\s*[A-Za-z][A-Za-z.'\-\s]*$",
        max_length=200,
        description="letters, spaces, dots, hyphens, apostrophes; at most 100 once spaces "
        "are collapsed",
    ),
]


class KycSubmission(msgspec.Struct, forbid_unknown_fields=True):
    pan: Pan
    name: PersonName
    bank_account: BankAccount
    ifsc: Ifsc


class KycView(msgspec.Struct):
    """What the user sees: PAN and account number masked."""

    status: KycStatus
    id: int | None = None
    name: str | None = None
    pan: str | None = None
    bank_account: str | None = None
    ifsc: str | None = None
    reason: str | None = None
    created_at: datetime | None = None
    decided_at: datetime | None = None


class KycAdminView(msgspec.Struct):
    id: int
    user_id: int
    phone: str
    name: str
    pan: str
    bank_account: str
    ifsc: str
    status: KycStatus
    reason: str | None
    created_at: datetime
    decided_at: datetime | None


class KycAdminPage(msgspec.Struct):
    items: list[KycAdminView]
    next_cursor: str | None


class KycDecision(msgspec.Struct, forbid_unknown_fields=True):
    decision: Literal["VERIFIED", "REJECTED"]
    reason: Annotated[StorableText, msgspec.Meta(max_length=500)] | None = None
