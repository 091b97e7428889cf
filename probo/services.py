"""The running services as one typed struct. The composition root (probo/app.py) builds
it at start-up and drops it when stopping; routes and tests reach a service through
`services_of`, never through untyped attributes of the application's state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncpg
    import redis.asyncio as aioredis

    from probo.admin import AdminService
    from probo.auth import AuthService
    from probo.infra import Settings
    from probo.kyc import KycService
    from probo.ledger import LedgerWriter
    from probo.markets import MarketService
    from probo.orderbook import Engine, EngineMirror
    from probo.realtime import Hub
    from probo.referral import ReferralService
    from probo.trading import TradingService
    from probo.wallet import WalletService


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    settings: Settings
    pool: asyncpg.Pool
    redis: aioredis.Redis
    engine: Engine
    writer: LedgerWriter
    hub: Hub
    mirror: EngineMirror
    auth: AuthService
    wallet: WalletService
    kyc: KycService
    referral: ReferralService
    trading: TradingService
    markets: MarketService
    admin: AdminService


def running_services(holder: Any) -> Services | None:
    """The services of an application (or its `state`) while it serves; None while it
    starts or stops."""
    state = getattr(holder, "state", holder)
    return getattr(state, "services", None)


def services_of(holder: Any) -> Services:
    """The services of a serving application (or its `state`): routes run only then."""
    services = running_services(holder)
    assert services is not None, "the application is not serving"
    return services
