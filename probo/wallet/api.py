"""Wallet HTTP routes for users: balance, history, deposits and withdrawals."""

from __future__ import annotations

from typing import Annotated

from litestar import Response, get, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import Parameter

from probo.auth import Claims
from probo.services import services_of
from probo.wallet.service import WalletService
from probo.wallet.types import (
    Deposit,
    DepositPage,
    DepositRequest,
    TransactionPage,
    Wallet,
    Withdrawal,
    WithdrawalPage,
    WithdrawalRequest,
)
from probo.web import (
    BIGINT_MAX,
    Cursor,
    Limit,
    decode_cursor,
    error_responses,
    repeat_response,
)

DepositId = Annotated[int, Parameter(ge=1, le=BIGINT_MAX)]


def provide_wallet_service(state: State) -> WalletService:
    return services_of(state).wallet


dependencies = {"wallet": Provide(provide_wallet_service, sync_to_thread=False)}


@get(
    "/api/v1/wallet",
    tags=["wallet"],
    summary="Balance, locked and available funds",
    responses=error_responses(401, 503),
)
async def get_wallet(principal: Claims, wallet: WalletService) -> Wallet:
    return await wallet.wallet(principal.user_id)


@get(
    "/api/v1/wallet/transactions",
    tags=["wallet"],
    summary="Money movements, newest first",
    responses=error_responses(400, 401, 503),
)
async def list_transactions(
    principal: Claims, wallet: WalletService, limit: Limit = 50, cursor: Cursor = None
) -> TransactionPage:
    return await wallet.transactions(principal.user_id, limit, decode_cursor(cursor))


@post(
    "/api/v1/wallet/deposits",
    tags=["wallet"],
    summary="Add funds (idempotent by key)",
    description="With the simulated provider the deposit completes at once. With cashfree it "
    "answers `pending` with `checkout` (the provider's order and payment session) and is "
    "credited when the provider confirms the payment. 201 when created; 200 when the same key "
    "and body repeat; 409 idempotency_conflict on another body; 503 when the provider cannot "
    "be reached (nothing is left pending: retry with the same key).",
    responses=error_responses(
        400, 401, 403, 409, 413, 422, 503, codes={409: "idempotency_conflict"}
    )
    | repeat_response(Deposit, "deposit (the same key and body)"),
)
async def create_deposit(
    data: DepositRequest, principal: Claims, wallet: WalletService
) -> Response[Deposit]:
    deposit, created = await wallet.deposits.create(
        principal.user_id, data.amount, data.idempotency_key
    )
    return Response(deposit, status_code=201 if created else 200)


@get(
    "/api/v1/wallet/deposits",
    tags=["wallet"],
    summary="My deposits, newest first",
    responses=error_responses(400, 401, 503),
)
async def list_deposits(
    principal: Claims, wallet: WalletService, limit: Limit = 50, cursor: Cursor = None
) -> DepositPage:
    return await wallet.deposits.of_user(principal.user_id, limit, decode_cursor(cursor))


@get(
    "/api/v1/wallet/deposits/{deposit_id:int}",
    tags=["wallet"],
    summary="One of my deposits",
    responses=error_responses(400, 401, 404, 503),
)
async def get_deposit(deposit_id: DepositId, principal: Claims, wallet: WalletService) -> Deposit:
    return await wallet.deposits.one(principal.user_id, deposit_id)


@post(
    "/api/v1/wallet/withdrawals",
    tags=["wallet"],
    summary="Withdraw to the verified bank account (idempotent by key)",
    description="Needs KYC VERIFIED (403 kyc_required); amount + fee <= available (422 "
    "insufficient_funds). The money leaves the balance at once. Above the review threshold the "
    "withdrawal is `pending` until an admin decides; otherwise `processing` while the payout "
    "goes out, then `completed`, or `failed` with the amount and fee returned. 201 when "
    "created; 200 when the same key and body repeat; 409 idempotency_conflict on another body.",
    responses=error_responses(
        400,
        401,
        403,
        409,
        413,
        422,
        503,
        codes={
            403: "kyc_required, forbidden",
            409: "idempotency_conflict",
            422: "validation_error, insufficient_funds",
        },
    )
    | repeat_response(Withdrawal, "withdrawal (the same key and body)"),
)
async def create_withdrawal(
    data: WithdrawalRequest, principal: Claims, wallet: WalletService
) -> Response[Withdrawal]:
    withdrawal, created = await wallet.withdrawals.create(
        principal.user_id, data.amount, data.idempotency_key
    )
    return Response(withdrawal, status_code=201 if created else 200)


@get(
    "/api/v1/wallet/withdrawals",
    tags=["wallet"],
    summary="My withdrawals, newest first",
    responses=error_responses(400, 401, 503),
)
async def list_withdrawals(
    principal: Claims, wallet: WalletService, limit: Limit = 50, cursor: Cursor = None
) -> WithdrawalPage:
    return await wallet.withdrawals.of_user(principal.user_id, limit, decode_cursor(cursor))


route_handlers = [
    get_wallet,
    list_transactions,
    create_deposit,
    list_deposits,
    get_deposit,
    create_withdrawal,
    list_withdrawals,
]
