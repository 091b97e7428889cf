"""PAN and bank verification requests and their admin review."""

from probo.kyc.api import dependencies, route_handlers
from probo.kyc.service import KycService
from probo.kyc.store import kyc_status_of

__all__ = ["KycService", "dependencies", "kyc_status_of", "route_handlers"]
