"""Session tokens: HS256 JWTs with `sub`, `jti`, `iat`, `exp` and `role`."""

from __future__ import annotations

import time
import uuid

import jwt
import msgspec

ALGORITHM = "HS256"
ROLES = ("user", "admin")
# Tokens verified recently, so a busy session is checked once, not on every request
# (expiry is still checked each time; revocation by the caller).
VERIFIED_CACHE_MAX = 100_000


class Claims(msgspec.Struct, frozen=True):
    user_id: int
    role: str
    jti: str
    expires_at: int  # unix seconds


class InvalidToken(Exception):
    """Malformed, wrongly signed or expired."""


class TokenIssuer:
    def __init__(self, secret: str, ttl_s: int) -> None:
        self._key = secret.encode()
        self.ttl_s = ttl_s
        self._verified: dict[str, Claims] = {}

    def issue(self, user_id: int, role: str) -> tuple[str, Claims]:
        now = int(time.time())
        claims = Claims(
            user_id=user_id, role=role, jti=uuid.uuid4().hex, expires_at=now + self.ttl_s
        )
        token = jwt.encode(
            {
                "sub": str(user_id),
                "jti": claims.jti,
                "iat": now,
                "exp": claims.expires_at,
                "role": role,
            },
            self._key,
            algorithm=ALGORITHM,
        )
        return token, claims

    def decode(self, token: str) -> Claims:
        claims = self._verified.get(token)
        if claims is None:
            claims = self._verify(token)
            if len(self._verified) >= VERIFIED_CACHE_MAX:
                self._verified.clear()
            self._verified[token] = claims
        if claims.expires_at <= time.time():
            raise InvalidToken("Signature has expired")
        return claims

    def _verify(self, token: str) -> Claims:
        try:
            payload = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                options={"require": ["sub", "jti", "exp", "role"]},
            )
            user_id = int(payload["sub"])
            role = payload["role"]
            jti = payload["jti"]
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
            raise InvalidToken(str(exc)) from None
        if role not in ROLES or not isinstance(jti, str) or user_id <= 0:
            raise InvalidToken("unexpected claims")
        return Claims(user_id=user_id, role=role, jti=jti, expires_at=int(payload["exp"]))
