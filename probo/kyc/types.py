"""Wire types of KYC: the request, the masked view users see, the admin's full view."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from probo.storable import StorableText

KycStatus = Literal["NONE", "PENDING", "VERIFIED", "REJECTED"]


class KycSubmission(msgspec.Struct, forbid_unknown_fields=True):
    pan: Annotated[StorableText, msgspec.Meta(max_length=32)]
    name: Annotated[StorableText, msgspec.Meta(max_length=200)]
    bank_account: Annotated[StorableText, msgspec.Meta(max_length=64)]
    ifsc: Annotated[StorableText, msgspec.Meta(max_length=32)]


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
