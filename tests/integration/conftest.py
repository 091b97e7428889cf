"""The service-level tests' fixtures (tests/services.py)."""

from tests.services import payment_provider, services

__all__ = ["payment_provider", "services"]
