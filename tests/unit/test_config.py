"""Settings come from PROBO_* variables only, are validated, and refuse unsafe prod setups."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from probo.infra import DEMO_ADMIN_PHONE, DEV_JWT_SECRET, ConfigError, load_settings


def test_defaults_match_the_contract() -> None:
    settings = load_settings({})
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.database_url is None and settings.redis_url is None
    assert settings.cookie_secure is True
    assert settings.sms_provider == "outbox"
    assert settings.sms_outbox == Path(".probo/sms-outbox.jsonl")
    assert (settings.signup_bonus, settings.referral_bonus) == (1500, 1000)
    assert settings.ack_timeout_ms == 5000
    assert settings.order_rate_limit == 50
    assert settings.auth_ip_rate_limit == 100
    assert settings.env == "dev"


def test_variables_are_read_and_typed() -> None:
    settings = load_settings(
        {
            "PROBO_PORT": "9001",
            "PROBO_COOKIE_SECURE": "false",
            "PROBO_ADMIN_PHONES": "+919812345678, 9876543210",
            "PROBO_SIGNUP_BONUS": "2000",
            "PROBO_SMS_PROVIDER": "console",
            "PROBO_DATABASE_URL": "postgresql://x@y/z",
        }
    )
    assert settings.port == 9001
    assert settings.cookie_secure is False
    assert settings.admin_phones == frozenset({"+919812345678", "+919876543210"})
    assert settings.signup_bonus == 2000
    assert settings.sms_provider == "console"
    assert settings.database_url == "postgresql://x@y/z"


def test_settings_are_frozen() -> None:
    settings = load_settings({})
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]
    assert msgspec.structs.replace(settings, port=1).port == 1


@pytest.mark.parametrize(
    ("environ", "complaint"),
    [
        ({"PROBO_PORT": "eighty"}, "PROBO_PORT"),
        ({"PROBO_PORT": "70000"}, "PROBO_PORT"),
        ({"PROBO_COOKIE_SECURE": "maybe"}, "PROBO_COOKIE_SECURE"),
        ({"PROBO_SMS_PROVIDER": "pigeon"}, "PROBO_SMS_PROVIDER"),
        ({"PROBO_ENV": "staging"}, "PROBO_ENV"),
        ({"PROBO_ADMIN_PHONES": "12345"}, "PROBO_ADMIN_PHONES"),
        ({"PROBO_SMS_PROVIDER": "twilio"}, "PROBO_TWILIO_ACCOUNT_SID"),
        ({"PROBO_SIGNUP_BONUS": "-5"}, "PROBO_SIGNUP_BONUS"),
        ({"PROBO_ENGINE_RECONCILE_INTERVAL_S": "0"}, "PROBO_ENGINE_RECONCILE_INTERVAL_S"),
        ({"PROBO_ENGINE_RECONCILE_INTERVAL_S": "nan"}, "PROBO_ENGINE_RECONCILE_INTERVAL_S"),
    ],
)
def test_bad_values_are_refused_by_name(environ: dict[str, str], complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        load_settings(environ)


def test_prod_needs_a_real_secret_and_secure_cookies() -> None:
    strong = "x" * 48
    with pytest.raises(ConfigError, match="PROBO_JWT_SECRET"):
        load_settings({"PROBO_ENV": "prod"})
    with pytest.raises(ConfigError, match="PROBO_JWT_SECRET"):
        load_settings({"PROBO_ENV": "prod", "PROBO_JWT_SECRET": DEV_JWT_SECRET})
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        load_settings({"PROBO_ENV": "prod", "PROBO_JWT_SECRET": "short"})
    with pytest.raises(ConfigError, match="PROBO_COOKIE_SECURE"):
        load_settings(
            {"PROBO_ENV": "prod", "PROBO_JWT_SECRET": strong, "PROBO_COOKIE_SECURE": "false"}
        )
    cashfree = {
        "PROBO_PAYMENTS_PROVIDER": "cashfree",
        "PROBO_CASHFREE_CLIENT_ID": "id",
        "PROBO_CASHFREE_CLIENT_SECRET": "secret",
    }
    prod = {"PROBO_ENV": "prod", "PROBO_JWT_SECRET": strong}
    assert load_settings(prod | cashfree).env == "prod"


def test_prod_refuses_the_simulated_payments_provider_by_name() -> None:
    prod = {"PROBO_ENV": "prod", "PROBO_JWT_SECRET": "x" * 48}
    for environ in (prod, prod | {"PROBO_PAYMENTS_PROVIDER": "simulated"}):
        with pytest.raises(ConfigError, match="PROBO_PAYMENTS_PROVIDER"):
            load_settings(environ)
    assert load_settings({}).payments_provider == "simulated"  # dev's default


PROD_WITH_CASHFREE = {
    "PROBO_ENV": "prod",
    "PROBO_JWT_SECRET": "x" * 48,
    "PROBO_PAYMENTS_PROVIDER": "cashfree",
    "PROBO_CASHFREE_CLIENT_ID": "id",
    "PROBO_CASHFREE_CLIENT_SECRET": "secret",
}


def test_the_demo_is_on_in_dev_with_its_admin_phone_unless_told_otherwise() -> None:
    settings = load_settings({})
    assert settings.demo is True
    assert settings.admin_phones == frozenset({DEMO_ADMIN_PHONE})
    chosen = load_settings({"PROBO_ADMIN_PHONES": "9812345678"})
    assert chosen.demo is True and chosen.admin_phones == frozenset({"+919812345678"})
    assert load_settings({"PROBO_ADMIN_PHONES": ""}).admin_phones == frozenset()
    off = load_settings({"PROBO_DEMO": "false"})
    assert off.demo is False and off.admin_phones == frozenset()


def test_the_demo_is_off_in_prod_and_refused_there() -> None:
    settings = load_settings(PROD_WITH_CASHFREE)
    assert settings.demo is False and settings.admin_phones == frozenset()
    with pytest.raises(ConfigError, match="PROBO_DEMO"):
        load_settings(PROD_WITH_CASHFREE | {"PROBO_DEMO": "true"})


def test_the_demo_needs_simulated_payments() -> None:
    cashfree = {key: value for key, value in PROD_WITH_CASHFREE.items() if "CASHFREE" in key}
    dev_cashfree = cashfree | {"PROBO_PAYMENTS_PROVIDER": "cashfree"}
    assert load_settings(dev_cashfree).demo is False
    with pytest.raises(ConfigError, match="PROBO_DEMO"):
        load_settings(dev_cashfree | {"PROBO_DEMO": "true"})


def test_cashfree_needs_its_credentials() -> None:
    with pytest.raises(ConfigError, match="PROBO_CASHFREE_CLIENT_ID"):
        load_settings({"PROBO_PAYMENTS_PROVIDER": "cashfree"})
    with pytest.raises(ConfigError, match="PROBO_PAYMENTS_PROVIDER"):
        load_settings({"PROBO_PAYMENTS_PROVIDER": "stripe"})
