"""Settings: every PROBO_* environment variable, read once, validated, frozen.

Nothing else in the project reads the environment. Limits are named `*_max`,
durations carry their unit (`_s`, `_ms`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import msgspec

from probo.infra.phone import InvalidPhone, normalise_phone

DEV_JWT_SECRET = "probo-dev-secret-do-not-use-in-production"
JWT_SECRET_LENGTH_MIN = 32
SMS_PROVIDERS = ("outbox", "console", "twilio")
PAYMENTS_PROVIDERS = ("simulated", "cashfree")
CASHFREE_PG_BASE_URL = "https://api.cashfree.com/pg"
CASHFREE_PAYOUT_BASE_URL = "https://api.cashfree.com/payout"
RECONCILE_INTERVAL_MIN_S = 0.05
RECONCILE_INTERVAL_MAX_S = 3600.0
DEPOSIT_AMOUNT_MIN = 100  # paise; the wire types state the same range (probo/wallet/types.py)
DEPOSIT_AMOUNT_MAX = 10_000_000
# The demo admin (docs/DECISIONS.md, Demo): in dev with the demo on and
# PROBO_ADMIN_PHONES unset, this phone is the admin; its OTP lands in the SMS outbox.
DEMO_ADMIN_PHONE = "+919999900000"


class ConfigError(ValueError):
    """A PROBO_* variable is missing, malformed or unsafe for the environment."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    env: Literal["dev", "prod"] = "dev"
    host: str = "127.0.0.1"
    port: int = 8000
    # None means: start the embedded server under data_dir.
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = Path("./.probo")
    database_pool_max: int = 10
    redis_key_prefix: str = "probo:"

    jwt_secret: str = DEV_JWT_SECRET
    session_ttl_s: int = 7 * 24 * 3600
    cookie_secure: bool = True
    admin_phones: frozenset[str] = frozenset()

    sms_provider: Literal["outbox", "console", "twilio"] = "outbox"
    sms_outbox: Path = Path("./.probo/sms-outbox.jsonl")
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_from: str = ""
    twilio_base_url: str = "https://api.twilio.com"

    otp_ttl_s: int = 300
    otp_attempts_max: int = 5
    otp_resend_cooldown_s: int = 30
    otp_per_phone_hour_max: int = 5
    auth_ip_rate_limit: int = 100  # OTP requests per IP per hour
    auth_verify_ip_rate_limit: int = 300  # verify attempts per IP per hour

    signup_bonus: int = 1500
    referral_bonus: int = 1000
    deposit_amount_min: int = DEPOSIT_AMOUNT_MIN
    deposit_amount_max: int = DEPOSIT_AMOUNT_MAX

    # Money in and out (SPEC §11). `simulated` completes at once; `cashfree` waits for
    # the provider's word (a signed webhook, or the reconciler's status check).
    payments_provider: Literal["simulated", "cashfree"] = "simulated"
    cashfree_client_id: str = ""
    cashfree_client_secret: str = ""
    cashfree_base_url: str = CASHFREE_PG_BASE_URL
    cashfree_payout_base_url: str = CASHFREE_PAYOUT_BASE_URL
    # Where the provider reaches this server (webhooks) and sends the user back after
    # checkout; None means http://{host}:{port}.
    public_url: str | None = None
    payments_reconcile_after_s: int = 300
    withdrawal_fee_bps: int = 0
    withdrawal_review_above: int = 1_000_000  # paise; larger withdrawals wait for an admin

    order_rate_limit: int = 50
    ack_timeout_ms: int = 5000
    # Engine decisions not yet committed by the ledger writer; new orders get 503 beyond.
    ledger_backlog_max: int = 50_000
    # Outside credits (bonus, referral, deposit) wait at most this long for the engine.
    engine_mirror_wait_ms: int = 1000
    engine_mirror_tries_max: int = 3
    engine_reconcile_interval_s: float = 5.0

    # The first-run demo (probo/demo): markets seeded into an empty database and a
    # liquidity bot trading them. On by default in dev with simulated payments; never in prod.
    demo: bool = False

    allowed_origins: frozenset[str] = frozenset()
    request_body_bytes_max: int = 64 * 1024
    log_level: str = "INFO"


def _parse_bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def _parse_int(name: str, raw: str, *, minimum: int, maximum: int) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be an integer, not {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, not {value}")
    return value


def _parse_set(raw: str) -> frozenset[str]:
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


_INT_BOUNDS: dict[str, tuple[str, int, int]] = {
    "PROBO_PORT": ("port", 0, 65535),
    "PROBO_DATABASE_POOL_MAX": ("database_pool_max", 2, 200),
    "PROBO_SESSION_TTL_S": ("session_ttl_s", 60, 90 * 24 * 3600),
    "PROBO_OTP_TTL_S": ("otp_ttl_s", 10, 3600),
    "PROBO_OTP_ATTEMPTS_MAX": ("otp_attempts_max", 1, 20),
    "PROBO_OTP_RESEND_COOLDOWN_S": ("otp_resend_cooldown_s", 0, 3600),
    "PROBO_OTP_PER_PHONE_HOUR_MAX": ("otp_per_phone_hour_max", 1, 1_000_000),
    "PROBO_AUTH_IP_RATE_LIMIT": ("auth_ip_rate_limit", 1, 100_000_000),
    "PROBO_AUTH_VERIFY_IP_RATE_LIMIT": ("auth_verify_ip_rate_limit", 1, 100_000_000),
    "PROBO_SIGNUP_BONUS": ("signup_bonus", 0, 100_000_000),
    "PROBO_REFERRAL_BONUS": ("referral_bonus", 0, 100_000_000),
    "PROBO_ORDER_RATE_LIMIT": ("order_rate_limit", 1, 100_000_000),
    "PROBO_ACK_TIMEOUT_MS": ("ack_timeout_ms", 10, 600_000),
    "PROBO_LEDGER_BACKLOG_MAX": ("ledger_backlog_max", 1, 10_000_000),
    "PROBO_ENGINE_MIRROR_WAIT_MS": ("engine_mirror_wait_ms", 0, 60_000),
    "PROBO_REQUEST_BODY_BYTES_MAX": ("request_body_bytes_max", 1024, 10_000_000),
    "PROBO_PAYMENTS_RECONCILE_AFTER_S": ("payments_reconcile_after_s", 1, 30 * 24 * 3600),
    "PROBO_WITHDRAWAL_FEE_BPS": ("withdrawal_fee_bps", 0, 2000),
    "PROBO_WITHDRAWAL_REVIEW_ABOVE": ("withdrawal_review_above", 0, 10**15),
}
_STR_FIELDS = {
    "PROBO_HOST": "host",
    "PROBO_DATABASE_URL": "database_url",
    "PROBO_REDIS_URL": "redis_url",
    "PROBO_REDIS_KEY_PREFIX": "redis_key_prefix",
    "PROBO_JWT_SECRET": "jwt_secret",
    "PROBO_TWILIO_ACCOUNT_SID": "twilio_account_sid",
    "PROBO_TWILIO_AUTH_TOKEN": "twilio_auth_token",
    "PROBO_TWILIO_FROM": "twilio_from",
    "PROBO_TWILIO_BASE_URL": "twilio_base_url",
    "PROBO_LOG_LEVEL": "log_level",
    "PROBO_CASHFREE_CLIENT_ID": "cashfree_client_id",
    "PROBO_CASHFREE_CLIENT_SECRET": "cashfree_client_secret",
    "PROBO_CASHFREE_BASE_URL": "cashfree_base_url",
    "PROBO_CASHFREE_PAYOUT_BASE_URL": "cashfree_payout_base_url",
    "PROBO_PUBLIC_URL": "public_url",
}


def _normalise_admin_phones(raw: str) -> frozenset[str]:
    phones = set()
    for part in _parse_set(raw):
        try:
            phones.add(normalise_phone(part))
        except InvalidPhone:
            raise ConfigError(f"PROBO_ADMIN_PHONES has an invalid phone {part!r}") from None
    return frozenset(phones)


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Read PROBO_* variables from `environ` (default: the process environment).

    `overrides` replace fields after parsing; tests use them. Raises ConfigError.
    """
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}

    raw_env = env.get("PROBO_ENV", "dev").strip().lower()
    if raw_env not in ("dev", "prod"):
        raise ConfigError(f"PROBO_ENV must be dev or prod, not {raw_env!r}")
    values["env"] = raw_env

    for name, field in _STR_FIELDS.items():
        raw = env.get(name)
        if raw is not None and raw.strip():
            values[field] = raw.strip() if field != "jwt_secret" else raw
    for name, (field, minimum, maximum) in _INT_BOUNDS.items():
        raw = env.get(name)
        if raw is not None and raw.strip():
            values[field] = _parse_int(name, raw, minimum=minimum, maximum=maximum)
    if (raw := env.get("PROBO_COOKIE_SECURE")) is not None and raw.strip():
        values["cookie_secure"] = _parse_bool("PROBO_COOKIE_SECURE", raw)
    if (raw := env.get("PROBO_SMS_PROVIDER")) is not None and raw.strip():
        provider = raw.strip().lower()
        if provider not in SMS_PROVIDERS:
            raise ConfigError(f"PROBO_SMS_PROVIDER must be one of {', '.join(SMS_PROVIDERS)}")
        values["sms_provider"] = provider
    if (raw := env.get("PROBO_PAYMENTS_PROVIDER")) is not None and raw.strip():
        provider = raw.strip().lower()
        if provider not in PAYMENTS_PROVIDERS:
            raise ConfigError(
                f"PROBO_PAYMENTS_PROVIDER must be one of {', '.join(PAYMENTS_PROVIDERS)}"
            )
        values["payments_provider"] = provider
    if (raw := env.get("PROBO_DATA_DIR")) is not None and raw.strip():
        values["data_dir"] = Path(raw.strip())
    data_dir = values.get("data_dir", Path("./.probo"))
    values["sms_outbox"] = Path(
        env.get("PROBO_SMS_OUTBOX") or Path(str(data_dir)) / "sms-outbox.jsonl"
    )
    if (raw := env.get("PROBO_ADMIN_PHONES")) is not None:
        values["admin_phones"] = _normalise_admin_phones(raw)
    if (raw := env.get("PROBO_ALLOWED_ORIGINS")) is not None:
        values["allowed_origins"] = frozenset(o.rstrip("/") for o in _parse_set(raw))
    if (raw := env.get("PROBO_ENGINE_RECONCILE_INTERVAL_S")) is not None and raw.strip():
        try:
            interval_s = float(raw)
        except ValueError:
            raise ConfigError("PROBO_ENGINE_RECONCILE_INTERVAL_S must be a number") from None
        if (
            not RECONCILE_INTERVAL_MIN_S <= interval_s <= RECONCILE_INTERVAL_MAX_S
        ):  # also refuses nan
            raise ConfigError(
                f"PROBO_ENGINE_RECONCILE_INTERVAL_S must be between {RECONCILE_INTERVAL_MIN_S} and {RECONCILE_INTERVAL_MAX_S}"
            )
        values["engine_reconcile_interval_s"] = interval_s

    if (raw := env.get("PROBO_DEMO")) is not None and raw.strip():
        values["demo"] = _parse_bool("PROBO_DEMO", raw)

    values.update(overrides)
    if "demo" not in values:  # on for a local first run, never by default elsewhere
        values["demo"] = (
            values["env"] == "dev" and values.get("payments_provider", "simulated") == "simulated"
        )
    if values["demo"] and "admin_phones" not in values:
        values["admin_phones"] = frozenset({DEMO_ADMIN_PHONE})
    settings = Settings(**values)  # type: ignore[arg-type]
    validate_settings(settings)
    return settings


def public_url(settings: Settings) -> str:
    """The base URL the payment provider calls back and returns users to."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return f"http://{settings.host}:{settings.port}"


def prod_warnings(settings: Settings) -> list[str]:
    """Allowed but doubtful in production; logged at start."""
    if settings.env == "prod" and settings.sms_provider != "twilio":
        return [
            f"PROBO_SMS_PROVIDER={settings.sms_provider} writes OTPs to a file or the log; use twilio in prod"
        ]
    return []


def validate_settings(settings: Settings) -> None:
    """Refuse combinations that are unsafe or cannot work."""
    if settings.deposit_amount_min > settings.deposit_amount_max:
        raise ConfigError("deposit minimum exceeds maximum")
    if settings.sms_provider == "twilio" and not (
        settings.twilio_account_sid and settings.twilio_auth_token and settings.twilio_from
    ):
        raise ConfigError(
            "PROBO_SMS_PROVIDER=twilio needs PROBO_TWILIO_ACCOUNT_SID, "
            "PROBO_TWILIO_AUTH_TOKEN and PROBO_TWILIO_FROM"
        )
    if settings.payments_provider == "cashfree" and not (
        settings.cashfree_client_id and settings.cashfree_client_secret
    ):
        raise ConfigError(
            "PROBO_PAYMENTS_PROVIDER=cashfree needs PROBO_CASHFREE_CLIENT_ID and "
            "PROBO_CASHFREE_CLIENT_SECRET"
        )
    if settings.demo and settings.env == "dev" and settings.payments_provider != "simulated":
        raise ConfigError(
            "PROBO_DEMO=true funds its bots with simulated deposits: it needs "
            "PROBO_PAYMENTS_PROVIDER=simulated (or set PROBO_DEMO=false)"
        )
    if settings.env == "prod":
        refusals = _prod_refusals(settings)
        if refusals:  # every one at once: an operator fixes them in one go
            raise ConfigError("; ".join(refusals))


def _prod_refusals(settings: Settings) -> list[str]:
    refusals = []
    if settings.jwt_secret == DEV_JWT_SECRET:
        refusals.append("PROBO_ENV=prod needs PROBO_JWT_SECRET")
    elif len(settings.jwt_secret.encode()) < JWT_SECRET_LENGTH_MIN:
        refusals.append(f"PROBO_JWT_SECRET must be at least {JWT_SECRET_LENGTH_MIN} bytes in prod")
    if not settings.cookie_secure:
        refusals.append("PROBO_ENV=prod refuses PROBO_COOKIE_SECURE=false")
    if settings.demo:
        refusals.append("PROBO_ENV=prod refuses PROBO_DEMO=true: the demo is for local runs")
    if settings.payments_provider == "simulated":
        refusals.append(
            "PROBO_ENV=prod refuses PROBO_PAYMENTS_PROVIDER=simulated: it credits money "
            "no provider confirmed; set PROBO_PAYMENTS_PROVIDER=cashfree"
        )
    return refusals
