"""Operations endpoints: liveness, readiness, Prometheus metrics, the live ledger audit."""

from probo.health.api import route_handlers

__all__ = ["route_handlers"]
