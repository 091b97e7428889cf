"""Phones are normalised to E.164; a bare 10-digit Indian mobile gains +91."""

from __future__ import annotations

import pytest

from probo.infra import InvalidPhone, normalise_phone


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("+919812345678", "+919812345678"),
        ("9812345678", "+919812345678"),
        ("98123 45678", "+919812345678"),
        ("098123-45678", "+919812345678"),
        ("+14155550123", "+14155550123"),
    ],
)
def test_accepted_forms(raw: str, normal: str) -> None:
    assert normalise_phone(raw) == normal


@pytest.mark.parametrize(
    "raw", ["", "12345", "5812345678", "+91123", "+9198123456789", "phone", "+0123456789", "9" * 40]
)
def test_refused_forms(raw: str) -> None:
    with pytest.raises(InvalidPhone):
        normalise_phone(raw)
