"""Referral HTTP routes."""

from __future__ import annotations

from litestar import get, post
from litestar.datastructures import State
from litestar.di import Provide

from probo.auth import Claims
from probo.referral.service import ReferralService
from probo.referral.types import ReferralApplied, ReferralSubmission, ReferralSummary
from probo.services import services_of
from probo.web import error_responses


def provide_referral_service(state: State) -> ReferralService:
    return services_of(state).referral


dependencies = {"referral": Provide(provide_referral_service, sync_to_thread=False)}


@post(
    "/api/v1/referrals",
    status_code=200,
    tags=["referral"],
    summary="Apply a referral code",
    responses=error_responses(
        400,
        401,
        403,
        409,
        413,
        422,
        503,
        codes={
            409: "already_referred, not_new",
            422: "validation_error, invalid_referral_code, self_referral, circular_referral",
        },
    ),
)
async def apply_referral(
    data: ReferralSubmission, principal: Claims, referral: ReferralService
) -> ReferralApplied:
    return await referral.apply(principal.user_id, data.code)


@get(
    "/api/v1/referrals",
    tags=["referral"],
    summary="My code, my referrals, what I earned",
    responses=error_responses(401, 404, 503),
)
async def my_referrals(principal: Claims, referral: ReferralService) -> ReferralSummary:
    return await referral.summary(principal.user_id)


route_handlers = [apply_referral, my_referrals]
