"""Wire types of the auth API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from probo.web import StorableText

Phone = Annotated[
    StorableText,
    msgspec.Meta(min_length=1, max_length=32, description="E.164, or a 10-digit Indian mobile"),
]
OtpDigits = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6}$", description="6 digits")]


class OtpRequest(msgspec.Struct, forbid_unknown_fields=True):
    phone: Phone


class OtpSent(msgspec.Struct):
    phone: str
    expires_in: int
    resend_after: int
    status: str = "sent"


class VerifyRequest(msgspec.Struct, forbid_unknown_fields=True):
    phone: Phone
    otp: OtpDigits


class Me(msgspec.Struct):
    id: int
    phone: str
    referral_code: str
    is_new: bool
    kyc_status: Literal["NONE", "PENDING", "VERIFIED", "REJECTED"]
    role: Literal["user", "admin"]
    created_at: datetime


class LoginResult(msgspec.Struct):
    token: str
    expires_at: int
    user: Me
    token_type: str = "bearer"


class LoggedOut(msgspec.Struct):
    status: str = "logged_out"
