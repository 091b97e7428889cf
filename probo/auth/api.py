"""Auth HTTP routes, and the dependencies every other package uses to know the caller.

A session is a JWT sent as the `probo_session` cookie or as `Authorization: Bearer`.
Cookie-authenticated writes are refused from foreign origins (CSRF): SameSite=Lax
plus an Origin (or Referer) check against the request's own host.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from litestar import Request, Response, delete, get, patch, post
from litestar.datastructures import Cookie, State
from litestar.di import Provide
from litestar.params import Parameter

from probo.auth.service import AuthService, suspended
from probo.auth.tokens import Claims, InvalidToken
from probo.auth.types import (
    LoggedOut,
    LoggedOutEverywhere,
    LoginResult,
    Me,
    OtpRequest,
    OtpSent,
    ProfileUpdate,
    SessionPage,
    SessionRevoked,
    VerifyRequest,
)
from probo.infra import Settings
from probo.services import services_of
from probo.web import (
    BIGINT_MAX,
    Cursor,
    Limit,
    decode_cursor,
    error_responses,
    forbidden,
    unauthorized,
)

SESSION_COOKIE = "probo_session"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TOKEN_LENGTH_MAX = 4096
SessionId = Annotated[int, Parameter(ge=1, le=BIGINT_MAX)]


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _origin_of(value: str) -> str | None:
    parts = urlsplit(value)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def is_foreign_origin(request: Request, allowed_origins: frozenset[str]) -> bool:
    """True when a browser says this request comes from a page of another site.

    A request with neither Origin nor Referer is not from a browser page; SameSite
    already keeps the cookie off cross-site subrequests.
    """
    raw = request.headers.get("origin") or request.headers.get("referer")
    if raw is None:
        return False
    origin = _origin_of(raw)
    if origin is None:  # "null" (sandboxed frames, file://) or garbage
        return True
    if origin in allowed_origins:
        return False
    host = request.headers.get("host", "").lower()
    return urlsplit(origin).netloc != host


def session_token(request: Request) -> tuple[str | None, bool]:
    """(token, came from the cookie)."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("Authorization must be 'Bearer <token>'")
        return token.strip(), False
    cookie = request.cookies.get(SESSION_COOKIE)
    return (cookie, True) if cookie else (None, False)


def authenticate(request: Request, auth: AuthService, settings: Settings) -> Claims:
    token, via_cookie = session_token(request)
    if token is None:
        raise unauthorized()
    if len(token) > TOKEN_LENGTH_MAX:
        raise unauthorized("invalid session token")
    try:
        claims = auth.tokens.decode(token)
    except InvalidToken:
        raise unauthorized("invalid or expired session token") from None
    # Before revocation: a suspended user's tokens are all revoked too, and the answer
    # should say why. An in-memory check, so order entry stays off the database.
    if auth.revocations.is_suspended(claims.user_id):
        raise suspended()
    if auth.revocations.is_revoked(claims.jti):
        raise unauthorized("this session has been logged out")
    if (
        via_cookie
        and request.method in UNSAFE_METHODS
        and is_foreign_origin(request, settings.allowed_origins)
    ):
        raise forbidden("cross-site request refused")
    auth.activity.seen(claims.jti)
    return claims


def _claims_for(request: Request, *, admin: bool) -> Claims:
    claims = request.scope.get("probo_claims")
    if claims is None:
        services = services_of(request.app)
        claims = authenticate(request, services.auth, services.settings)
        request.scope["probo_claims"] = claims  # type: ignore[typeddict-unknown-key]
    if admin and claims.role != "admin":
        raise forbidden("admins only")
    return claims


def authenticate_first(request: Request) -> None:
    """A `before_request` step: who is asking is settled before the body is looked at,
    so an anonymous caller gets 401 (and a user on an admin route 403), never a
    verdict on a body it may not send."""
    parameters = request.route_handler.parsed_fn_signature.parameters
    if "admin" in parameters:
        _claims_for(request, admin=True)
    elif "principal" in parameters:
        _claims_for(request, admin=False)


async def provide_principal(request: Request) -> Claims:
    return _claims_for(request, admin=False)


async def provide_admin(request: Request) -> Claims:
    return _claims_for(request, admin=True)


def provide_auth_service(state: State) -> AuthService:
    return services_of(state).auth


dependencies = {
    "principal": Provide(provide_principal),
    "admin": Provide(provide_admin),
    "auth": Provide(provide_auth_service, sync_to_thread=False),
}


def _session_cookie(settings: Settings, token: str, max_age: int) -> Cookie:
    return Cookie(
        key=SESSION_COOKIE,
        value=token,
        max_age=max_age,
        path="/",
        httponly=True,
        secure=settings.cookie_secure,
        samesite="lax",
    )


@post(
    "/api/v1/auth/otp",
    status_code=202,
    tags=["auth"],
    summary="Send a login code by SMS",
    responses=error_responses(400, 413, 422, 429, 503),
)
async def request_otp(data: OtpRequest, request: Request, auth: AuthService) -> OtpSent:
    return await auth.request_otp(data.phone, client_ip(request))


@post(
    "/api/v1/auth/verify",
    status_code=200,
    tags=["auth"],
    summary="Log in with the code",
    responses=error_responses(
        400,
        401,
        403,
        413,
        422,
        429,
        503,
        codes={401: "otp_invalid, otp_expired", 403: "suspended (the code was right)"},
    ),
)
async def verify_otp(
    data: VerifyRequest, request: Request, auth: AuthService, state: State
) -> Response[LoginResult]:
    result = await auth.verify(
        data.phone, data.otp, client_ip(request), request.headers.get("user-agent")
    )
    return Response(
        result,
        cookies=[_session_cookie(services_of(state).settings, result.token, auth.tokens.ttl_s)],
    )


@post(
    "/api/v1/auth/logout",
    status_code=200,
    tags=["auth"],
    summary="Revoke this session",
    responses=error_responses(401, 403, 503),
)
async def logout(principal: Claims, auth: AuthService, state: State) -> Response[LoggedOut]:
    await auth.logout(principal)
    return Response(LoggedOut(), cookies=[_session_cookie(services_of(state).settings, "", 0)])


@get("/api/v1/me", tags=["auth"], summary="Who am I", responses=error_responses(401, 403, 503))
async def me(principal: Claims, auth: AuthService) -> Me:
    return await auth.me(principal.user_id)


# Every authenticated route may answer 403: `suspended`, or `forbidden` for a
# cookie-authenticated write from a foreign origin.


@patch(
    "/api/v1/me",
    status_code=200,
    tags=["auth"],
    summary="Set my display name",
    responses=error_responses(
        400,
        401,
        403,
        409,
        413,
        422,
        503,
        codes={409: "display_name_taken", 422: "validation_error (3-20 of A-Z a-z 0-9 _)"},
    ),
)
async def update_me(data: ProfileUpdate, principal: Claims, auth: AuthService) -> Me:
    return await auth.set_display_name(principal.user_id, data.display_name)


@get(
    "/api/v1/auth/sessions",
    tags=["auth"],
    summary="My live sessions, newest first",
    responses=error_responses(400, 401, 403, 503),
)
async def list_sessions(
    principal: Claims, auth: AuthService, limit: Limit = 50, cursor: Cursor = None
) -> SessionPage:
    return await auth.sessions(principal, limit, decode_cursor(cursor))


@delete(
    "/api/v1/auth/sessions/{session_id:int}",
    status_code=200,
    tags=["auth"],
    summary="Revoke one of my sessions",
    description="Its token stops working and its WebSocket user channel ends. 404 not_found "
    "for a session that is not one of my live ones.",
    responses=error_responses(400, 401, 403, 404, 503),
)
async def revoke_session(
    session_id: SessionId, principal: Claims, auth: AuthService, state: State
) -> Response[SessionRevoked]:
    jti = await auth.revoke_session(principal.user_id, session_id)
    cookies = []
    if jti == principal.jti:  # this very session: its cookie goes too
        cookies.append(_session_cookie(services_of(state).settings, "", 0))
    return Response(SessionRevoked(id=session_id), cookies=cookies)


@post(
    "/api/v1/auth/logout-all",
    status_code=200,
    tags=["auth"],
    summary="Revoke every one of my sessions, this one included",
    responses=error_responses(401, 403, 503),
)
async def logout_all(
    principal: Claims, auth: AuthService, state: State
) -> Response[LoggedOutEverywhere]:
    revoked = await auth.revoke_all_sessions(principal.user_id, also=principal)
    return Response(
        LoggedOutEverywhere(revoked=revoked),
        cookies=[_session_cookie(services_of(state).settings, "", 0)],
    )


@post(
    "/api/v1/auth/refresh",
    status_code=200,
    tags=["auth"],
    summary="A new token for this session; the old one is revoked",
    responses=error_responses(401, 403, 503),
)
async def refresh(
    principal: Claims, request: Request, auth: AuthService, state: State
) -> Response[LoginResult]:
    result = await auth.refresh(principal, request.headers.get("user-agent"))
    return Response(
        result,
        cookies=[_session_cookie(services_of(state).settings, result.token, auth.tokens.ttl_s)],
    )


route_handlers = [
    request_otp,
    verify_otp,
    logout,
    me,
    update_me,
    list_sessions,
    revoke_session,
    logout_all,
    refresh,
]
