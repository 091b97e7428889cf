"""Referral codes and the referral reward."""

from probo.referral.api import dependencies, route_handlers
from probo.referral.service import ReferralService

__all__ = ["ReferralService", "dependencies", "route_handlers"]
