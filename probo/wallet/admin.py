"""Admin routes of the wallet: the withdrawals queue and its decisions (SPEC §11)."""

from __future__ import annotations

from typing import Annotated

from litestar import get, post
from litestar.params import Parameter

from probo.auth import Claims
from probo.wallet.service import WalletService
from probo.wallet.types import (
    AdminWithdrawal,
    AdminWithdrawalPage,
    WithdrawalDecision,
    WithdrawalStatus,
)
from probo.web import BIGINT_MAX, Cursor, Limit, decode_cursor, error_responses

WithdrawalId = Annotated[int, Parameter(ge=1, le=BIGINT_MAX)]
StatusFilter = Annotated[WithdrawalStatus | None, Parameter(default=None)]


@get(
    "/api/v1/admin/withdrawals",
    tags=["admin"],
    summary="Withdrawals, newest first (the review queue with ?status=pending)",
    responses=error_responses(400, 401, 403, 503),
)
async def withdrawal_queue(
    admin: Claims,
    wallet: WalletService,
    status: StatusFilter = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> AdminWithdrawalPage:
    return await wallet.withdrawals.for_admin(status, limit, decode_cursor(cursor))


@post(
    "/api/v1/admin/withdrawals/{withdrawal_id:int}/decision",
    status_code=200,
    tags=["admin"],
    summary="Approve (the payout goes out) or reject (the money goes back) a pending withdrawal",
    responses=error_responses(
        400, 401, 403, 404, 409, 413, 422, 503, codes={409: "invalid_transition"}
    ),
)
async def decide_withdrawal(
    withdrawal_id: WithdrawalId, data: WithdrawalDecision, admin: Claims, wallet: WalletService
) -> AdminWithdrawal:
    return await wallet.withdrawals.decide(
        withdrawal_id,
        approve=data.decision == "APPROVED",
        reason=data.reason,
        admin_id=admin.user_id,
    )


route_handlers = [withdrawal_queue, decide_withdrawal]
