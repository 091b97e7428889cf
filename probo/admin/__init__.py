"""The back office: users and their money, suspension, the ledger browser, the figures."""

from probo.admin.api import dependencies, route_handlers
from probo.admin.service import AdminService

__all__ = ["AdminService", "dependencies", "route_handlers"]
