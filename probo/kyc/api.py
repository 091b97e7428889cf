"""KYC HTTP routes for users and admins."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import Response, get, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import Parameter

from probo.auth import Claims
from probo.kyc.service import KycService
from probo.kyc.types import KycAdminPage, KycAdminView, KycDecision, KycSubmission, KycView
from probo.services import services_of
from probo.web import BIGINT_MAX, Cursor, Limit, decode_cursor, error_responses, repeat_response

KycId = Annotated[int, Parameter(ge=1, le=BIGINT_MAX)]
StatusFilter = Annotated[Literal["PENDING", "VERIFIED", "REJECTED"] | None, Parameter(default=None)]


def provide_kyc_service(state: State) -> KycService:
    return services_of(state).kyc


dependencies = {"kyc": Provide(provide_kyc_service, sync_to_thread=False)}


@post(
    "/api/v1/kyc",
    tags=["kyc"],
    summary="Submit PAN and bank details for review",
    responses=error_responses(
        400, 401, 403, 409, 413, 422, 503, codes={409: "kyc_pending, kyc_verified"}
    )
    | repeat_response(KycView, "request (the pending one, submitted again)"),
)
async def submit_kyc(data: KycSubmission, principal: Claims, kyc: KycService) -> Response[KycView]:
    view, created = await kyc.submit(principal.user_id, data)
    return Response(view, status_code=201 if created else 200)


@get(
    "/api/v1/kyc",
    tags=["kyc"],
    summary="My latest KYC request, masked",
    responses=error_responses(401, 503),
)
async def my_kyc(principal: Claims, kyc: KycService) -> KycView:
    return await kyc.latest(principal.user_id)


@get(
    "/api/v1/admin/kyc",
    tags=["admin"],
    summary="KYC review queue",
    responses=error_responses(400, 401, 403, 503),
)
async def kyc_queue(
    admin: Claims,
    kyc: KycService,
    status: StatusFilter = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> KycAdminPage:
    return await kyc.queue(status, limit, decode_cursor(cursor))


@post(
    "/api/v1/admin/kyc/{kyc_id:int}/decision",
    status_code=200,
    tags=["admin"],
    summary="Verify or reject",
    responses=error_responses(
        400, 401, 403, 404, 409, 413, 422, 503, codes={409: "invalid_transition, pan_in_use"}
    ),
)
async def decide_kyc(
    kyc_id: KycId, data: KycDecision, admin: Claims, kyc: KycService
) -> KycAdminView:
    return await kyc.decide(admin.user_id, kyc_id, data.decision, data.reason)


route_handlers = [submit_kyc, my_kyc, kyc_queue, decide_kyc]
