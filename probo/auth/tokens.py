"""Session tokens: HS256 JWTs with `sub`, `jti`, `iat`, `exp` and `role`."""

from __future__ import annotations

import time
import uuid

import jwt
import msgspec

ALGORITHM = "HS256"
ROLES = ("user", "admin")


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
