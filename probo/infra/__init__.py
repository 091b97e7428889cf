"""The process's infrastructure: configuration, Postgres and Redis connections, the
embedded servers, metrics, logs, the collector's schedule, phone numbers."""

from probo.infra import collector, db, embedded, metrics
from probo.infra.config import (
    DEMO_ADMIN_PHONE,
    DEPOSIT_AMOUNT_MAX,
    DEPOSIT_AMOUNT_MIN,
    DEV_JWT_SECRET,
    ConfigError,
    Settings,
    load_settings,
    prod_warnings,
    public_url,
)
from probo.infra.db import (
    CONFLICT_ERRORS,
    CONNECT_TIMEOUT_S,
    UNAVAILABLE_ERRORS,
    PoolExhausted,
    connection,
    create_pool,
    ensure_database,
    migrate,
    migrate_url,
    ping,
    with_database,
)
from probo.infra.embedded import (
    EmbeddedPostgres,
    EmbeddedRedis,
    EmbeddedServerError,
    start_postgres,
    start_redis,
)
from probo.infra.observability import configure_logging, request_context_middleware
from probo.infra.phone import InvalidPhone, mask_phone, normalise_phone
from probo.infra.redis_store import (
    OUTAGE_RETRY_AFTER_S,
    REDIS_UNAVAILABLE_ERRORS,
    connect_redis,
    connect_redis_subscriber,
)

__all__ = [
    "CONFLICT_ERRORS",
    "CONNECT_TIMEOUT_S",
    "DEPOSIT_AMOUNT_MAX",
    "DEPOSIT_AMOUNT_MIN",
    "DEMO_ADMIN_PHONE",
    "DEV_JWT_SECRET",
    "OUTAGE_RETRY_AFTER_S",
    "REDIS_UNAVAILABLE_ERRORS",
    "UNAVAILABLE_ERRORS",
    "ConfigError",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "EmbeddedServerError",
    "InvalidPhone",
    "PoolExhausted",
    "Settings",
    "collector",
    "configure_logging",
    "connect_redis",
    "connect_redis_subscriber",
    "connection",
    "create_pool",
    "db",
    "embedded",
    "ensure_database",
    "load_settings",
    "mask_phone",
    "metrics",
    "migrate",
    "migrate_url",
    "normalise_phone",
    "ping",
    "prod_warnings",
    "public_url",
    "request_context_middleware",
    "start_postgres",
    "start_redis",
    "with_database",
]
