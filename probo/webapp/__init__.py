"""The web app (SPEC §14): the trader app's HTML shell at `/` and its files under `/static`."""

from probo.webapp.pages import CONTENT_SECURITY_POLICY, route_handlers

__all__ = ["CONTENT_SECURITY_POLICY", "route_handlers"]
