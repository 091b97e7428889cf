"""Phone OTP login, JWT sessions, roles, logout revocation, CSRF protection, the
profile and suspension."""

from probo.auth.api import (
    authenticate_first,
    dependencies,
    is_foreign_origin,
    route_handlers,
    session_token,
)
from probo.auth.otp import OtpStore
from probo.auth.revocations import RevocationList
from probo.auth.service import AfterCommit, AuthService
from probo.auth.sessions import SessionActivity
from probo.auth.sms import SmsError, SmsProvider, build_sms_provider
from probo.auth.store import is_referral_code, phone_of
from probo.auth.tokens import Claims, InvalidToken, TokenIssuer

__all__ = [
    "AfterCommit",
    "AuthService",
    "Claims",
    "InvalidToken",
    "SessionActivity",
    "OtpStore",
    "RevocationList",
    "SmsError",
    "SmsProvider",
    "TokenIssuer",
    "authenticate_first",
    "build_sms_provider",
    "dependencies",
    "is_foreign_origin",
    "phone_of",
    "is_referral_code",
    "route_handlers",
    "session_token",
]
