"""Back-office HTTP routes (admins only): users, suspension, the ledger, the figures."""

from __future__ import annotations

from typing import Annotated

from litestar import get, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import Parameter

from probo.admin.service import AdminService
from probo.admin.types import (
    AdminTransferPage,
    AdminUser,
    AdminUserDetail,
    AdminUserPage,
    Stats,
    TransferKind,
)
from probo.auth import Claims
from probo.services import services_of
from probo.web import (
    BIGINT_MAX,
    Cursor,
    Limit,
    decode_cursor,
    error_responses,
    storable_text_parameter,
)

UserId = Annotated[int, Parameter(ge=1, le=BIGINT_MAX)]
IdFilter = Annotated[int | None, Parameter(ge=1, le=BIGINT_MAX)]
KindFilter = Annotated[TransferKind | None, Parameter(default=None)]
UserQuery = Annotated[
    str | None,
    storable_text_parameter(
        max_length=64,
        description="a user id (exact), a phone (prefix; a bare number also as +91...), "
        "or a display name (prefix, any case)",
    ),
]


def provide_admin_service(state: State) -> AdminService:
    return services_of(state).admin


dependencies = {"admin_service": Provide(provide_admin_service, sync_to_thread=False)}


@get(
    "/api/v1/admin/users",
    tags=["admin"],
    summary="Users, newest first; ?q= finds by id, phone or display name",
    responses=error_responses(400, 401, 403, 503),
)
async def list_users(
    admin: Claims,
    admin_service: AdminService,
    q: UserQuery = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> AdminUserPage:
    return await admin_service.users(q, limit, decode_cursor(cursor))


@get(
    "/api/v1/admin/users/{user_id:int}",
    tags=["admin"],
    summary="One user, with positions, open orders and the last 20 transactions",
    responses=error_responses(400, 401, 403, 404, 503),
)
async def get_user(user_id: UserId, admin: Claims, admin_service: AdminService) -> AdminUserDetail:
    return await admin_service.user(user_id)


@post(
    "/api/v1/admin/users/{user_id:int}/suspend",
    status_code=200,
    tags=["admin"],
    summary="Suspend a user: sessions revoked, open orders canceled, login and trading refused",
    responses=error_responses(400, 401, 403, 404, 409, 503, codes={409: "cannot_suspend_admin"}),
)
async def suspend_user(user_id: UserId, admin: Claims, admin_service: AdminService) -> AdminUser:
    return await admin_service.suspend(user_id, admin_id=admin.user_id)


@post(
    "/api/v1/admin/users/{user_id:int}/unsuspend",
    status_code=200,
    tags=["admin"],
    summary="Lift a user's suspension",
    responses=error_responses(400, 401, 403, 404, 503),
)
async def unsuspend_user(user_id: UserId, admin: Claims, admin_service: AdminService) -> AdminUser:
    return await admin_service.unsuspend(user_id, admin_id=admin.user_id)


@get(
    "/api/v1/admin/transfers",
    tags=["admin"],
    summary="The ledger's transfers, newest first, by kind, user and market",
    description="user_id: transfers into or out of the user's cash. market_id: transfers "
    "into or out of the market's escrow (mints, merges, payouts) and those referring to "
    "the market (settlement fees); a trade between two users' cash is found by user_id.",
    responses=error_responses(400, 401, 403, 503),
)
async def list_transfers(
    admin: Claims,
    admin_service: AdminService,
    kind: KindFilter = None,
    user_id: IdFilter = None,
    market_id: IdFilter = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> AdminTransferPage:
    return await admin_service.transfers(
        kind=kind,
        user_id=user_id,
        market_id=market_id,
        limit=limit,
        before_id=decode_cursor(cursor),
    )


@get(
    "/api/v1/admin/stats",
    tags=["admin"],
    summary="The exchange's figures (money in paise, volume in contracts)",
    responses=error_responses(401, 403, 503),
)
async def stats(admin: Claims, admin_service: AdminService) -> Stats:
    return await admin_service.stats()


route_handlers = [list_users, get_user, suspend_user, unsuspend_user, list_transfers, stats]
