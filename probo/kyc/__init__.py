"""PAN and bank verification requests and their admin review."""

from probo.kyc.api import dependencies, route_handlers
from probo.kyc.service import KycService
from probo.kyc.store import kyc_status_of, verified_request
from probo.kyc.types import KycAdminView

__all__ = [
    "KycAdminView",
    "KycService",
    "dependencies",
    "kyc_status_of",
    "route_handlers",
    "verified_request",
]
