"""The service-level tests' fixtures (tests/services.py)."""

from tests.services import payment_gateway, services

__all__ = ["payment_gateway", "services"]
