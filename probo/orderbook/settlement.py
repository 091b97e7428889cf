"""Settlement of a resolved market, as a pure function over the holdings."""

from __future__ import annotations

from collections.abc import Iterable

from probo.orderbook.types import CONTRACT_PAYOUT, Payout, Settlement

BASIS_POINTS = 10_000
# Value of one YES contract per outcome; a NO contract is worth the rest.
YES_VALUE = {"yes": CONTRACT_PAYOUT, "no": 0, "void": CONTRACT_PAYOUT // 2}


def compute_settlement(
    market_id: int, holdings: Iterable[tuple[int, int, int]], outcome: str, fee_bps: int
) -> Settlement:
    """Payouts for `(user_id, yes, no)` holdings: gross by contract value, the fee
    `floor(gross × fee_bps / 10000)` kept from each positive payout, by user id."""
    assert outcome in YES_VALUE, outcome
    assert 0 <= fee_bps <= BASIS_POINTS, fee_bps
    yes_value = YES_VALUE[outcome]
    no_value = CONTRACT_PAYOUT - yes_value
    payouts = []
    for user_id, yes, no in sorted(holdings):
        gross = yes * yes_value + no * no_value
        if gross <= 0:
            continue
        fee = gross * fee_bps // BASIS_POINTS
        payouts.append(
            Payout(
                user_id=user_id,
                yes_quantity=yes,
                no_quantity=no,
                gross=gross,
                fee=fee,
                net=gross - fee,
            )
        )
    return Settlement(
        market_id=market_id,
        outcome=outcome,  # type: ignore[arg-type]
        payouts=payouts,
        escrow_released=sum(p.gross for p in payouts),
        fees=sum(p.fee for p in payouts),
    )
