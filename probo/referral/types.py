"""Wire types of referrals."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from probo.web import StorableText


class ReferralSubmission(msgspec.Struct, forbid_unknown_fields=True):
    code: Annotated[StorableText, msgspec.Meta(max_length=32)]


class ReferralApplied(msgspec.Struct):
    referrer_id: int
    code: str
    created_at: datetime
    status: str = "applied"


class Referee(msgspec.Struct):
    user_id: int
    created_at: datetime


class ReferralSummary(msgspec.Struct):
    code: str
    referrals: list[Referee]
    total_earned: int
    referral_count: int
