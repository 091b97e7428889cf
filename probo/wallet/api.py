"""Wallet HTTP routes: decode, call the service, encode."""

from __future__ import annotations

from litestar import Response, get, post
from litestar.datastructures import State
from litestar.di import Provide

from probo.auth import Claims
from probo.services import services_of
from probo.wallet.service import WalletService
from probo.wallet.types import (
    Deposit,
    DepositRequest,
    TransactionPage,
    Wallet,
    Withdrawal,
    WithdrawalRequest,
)
from probo.web import Cursor, Limit, decode_cursor, error_responses, repeat_response


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
    description="201 when created; 200 when the same key and body repeat; 409 idempotency_conflict on another body.",
    responses=error_responses(
        400, 401, 402, 403, 409, 413, 422, 503, codes={409: "idempotency_conflict"}
    )
    | repeat_response(Deposit, "deposit (the same key and body)"),
)
async def create_deposit(
    data: DepositRequest, principal: Claims, wallet: WalletService
) -> Response[Deposit]:
    deposit, created = await wallet.deposit(principal.user_id, data.amount, data.idempotency_key)
    return Response(deposit, status_code=201 if created else 200)


@post(
    "/api/v1/wallet/withdrawals",
    tags=["wallet"],
    summary="Withdraw to the verified bank account (idempotent by key)",
    description="Needs KYC VERIFIED (403 kyc_required); amount <= available (422 insufficient_funds). "
    "201 when created; 200 when the same key and body repeat; 409 idempotency_conflict on another body.",
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
    withdrawal, created = await wallet.withdraw(
        principal.user_id, data.amount, data.idempotency_key
    )
    return Response(withdrawal, status_code=201 if created else 200)


route_handlers = [get_wallet, list_transactions, create_deposit, create_withdrawal]
