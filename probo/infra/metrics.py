"""Prometheus metrics: every counter and gauge the process exposes at /metrics."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

HTTP_REQUESTS = Counter(
    "probo_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "probo_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
OTP_SENT = Counter("probo_otp_sent_total", "OTPs sent, by SMS provider", ["provider"])
POOL_EXHAUSTED = Counter(
    "probo_pool_exhausted_total",
    "requests refused because every pooled connection stayed in use for the pool's bounded wait",
    ["pool"],
)
OTP_VERIFY = Counter("probo_otp_verify_total", "OTP verifications, by result", ["result"])
ENGINE_MIRROR_APPLIED = Counter(
    "probo_engine_mirror_applied_total", "outside credits applied to the engine", ["path"]
)
ENGINE_MIRROR_FAILURES = Counter(
    "probo_engine_mirror_failures_total",
    "outside credits the engine did not take after every try (the reconciler applies them)",
)
DEPOSITS = Counter("probo_deposits_total", "deposits, by the status they reached", ["status"])
DEPOSITS_RECONCILED = Counter(
    "probo_deposits_reconciled_total",
    "pending deposits the reconciler settled after asking the provider, by status",
    ["status"],
)
PAYMENT_WEBHOOKS = Counter(
    "probo_payment_webhooks_total",
    "signed payment and payout webhooks, by what they did",
    ["outcome"],
)
PAYMENT_MISMATCHES = Counter(
    "probo_payment_mismatches_total",
    "payments whose amount or currency differs from what was asked, or that repeat a "
    "settled order: not credited, logged at error, for an operator",
)
PAYOUTS = Counter("probo_payouts_total", "withdrawals, by the status they reached", ["status"])
ORDERS = Counter("probo_orders_total", "order commands answered, by result", ["result"])
LEDGER_BATCH_SECONDS = Histogram(
    "probo_ledger_batch_seconds",
    "time to commit one ledger batch",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
LEDGER_BATCH_ENTRIES = Histogram(
    "probo_ledger_batch_entries",
    "commands per ledger batch",
    buckets=(1, 4, 16, 64, 256, 1024, 4096, 16384),
)
LEDGER_COMMIT_FAILURES = Counter(
    "probo_ledger_commit_failures_total",
    "ledger batch commits that failed (retried, or split when refused for their data)",
)
LEDGER_ENTRIES_NOT_RECORDED = Counter(
    "probo_ledger_entries_not_recorded_total",
    "engine decisions the ledger did not record: refused by Postgres (a bug to fix), or "
    "undone because they built on one that was (then the engine is rebuilt)",
    ["reason"],
)
ENGINE_REBUILDS = Counter(
    "probo_engine_rebuilds_total", "times the engine was rebuilt from Postgres while running"
)
WS_CONNECTIONS = Gauge("probo_ws_connections", "open WebSocket connections")
WS_KICKED = Counter(
    "probo_ws_kicked_total", "WebSocket connections closed for falling behind their feed"
)
GC_PAUSE_SECONDS = Histogram(
    "probo_gc_pause_seconds",
    "scheduled collections of the cycle collector, by kind (young, full)",
    ["kind"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
GC_FROZEN_OBJECTS = Gauge(
    "probo_gc_frozen_objects",
    "objects frozen out of young collections (live or awaiting a full one)",
)
GC_COLLECTED = Counter(
    "probo_gc_collected_total", "unreachable objects the scheduled collections found", ["kind"]
)


_request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
REQUEST_LABELS_MAX = 10_000  # routes are templates, so this is only ever a few hundred


def observe_request(method: str, route: str, status_code: int, seconds: float) -> None:
    """Count and time one answered request (label children cached: this runs per request)."""
    key = (method, route, status_code)
    children = _request_children.get(key)
    if children is None:
        children = (
            HTTP_REQUESTS.labels(method, route, str(status_code)),
            HTTP_LATENCY.labels(method, route),
        )
        if len(_request_children) < REQUEST_LABELS_MAX:
            _request_children[key] = children
    children[0].inc()
    children[1].observe(seconds)


def render() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
