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
DISPLAY_NAME_PATTERN = r"^[A-Za-z0-9_]{3,20}$"
DisplayName = Annotated[
    str,
    msgspec.Meta(
        pattern=DISPLAY_NAME_PATTERN,
        description="3-20 letters, digits or underscores; unique whatever the case",
    ),
]


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
    display_name: str | None = None


class LoginResult(msgspec.Struct):
    token: str
    expires_at: int
    user: Me
    token_type: str = "bearer"


class LoggedOut(msgspec.Struct):
    status: str = "logged_out"


class LoggedOutEverywhere(msgspec.Struct):
    revoked: int  # sessions revoked
    status: str = "logged_out"


class Session(msgspec.Struct):
    id: int
    created_at: datetime
    last_seen_at: datetime
    user_agent: str
    current: bool  # the session this request is made with


class SessionPage(msgspec.Struct):
    items: list[Session]
    next_cursor: str | None


class SessionRevoked(msgspec.Struct):
    id: int
    status: str = "revoked"


class ProfileUpdate(msgspec.Struct, forbid_unknown_fields=True):
    display_name: DisplayName
