"""One-time passwords in Redis: issue and verify, with every limit SPEC §4 sets.

OTPs are 6 digits from a CSPRNG and stored only as an HMAC under the server secret.
A code is void after `otp_attempts_max` wrong tries or `otp_ttl_s`; the attempt count
and the comparison run in one Lua script so parallel guesses cannot exceed the limit.
Issuing is one Lua script too: the per-IP limit, the resend cooldown, the per-phone
hourly limit and the new code's hash take one round trip and one pooled connection
instead of four, which is what a burst of logins queues for.

The Redis commands and scripts stay in this module rather than in store.py: OTPs live
only in Redis, and store.py holds auth's SQL.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import redis.asyncio as aioredis

from probo.infra import Settings
from probo.web import ApiError, rate_limited

OTP_DIGITS = 6
HOUR_S = 3600

# KEYS[1] = otp hash key; ARGV[1] = candidate digest, ARGV[2] = attempts max.
# Returns 1 accepted (and deleted), 0 wrong, -1 missing or expired, -2 void (attempts used).
_VERIFY_SCRIPT = """
local stored = redis.call('HGET', KEYS[1], 'digest')
if not stored then return -1 end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if attempts > tonumber(ARGV[2]) then return -2 end
if stored == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# KEYS[1] per-IP counter, KEYS[2] resend cooldown, KEYS[3] per-phone counter, KEYS[4] otp
# hash; ARGV: window s, IP max, cooldown s, phone max, digest, otp ttl s.
# Returns {0, 0} issued, else {limit, seconds until it lifts}: 1 per IP, 2 cooldown,
# 3 per phone. Counters are fixed windows; each check runs only if the one before passed.
_ISSUE_SCRIPT = """
local function hit(key, window_s)
  local count = redis.call('INCR', key)
  if count == 1 then redis.call('EXPIRE', key, window_s) end
  return count
end
local window_s = tonumber(ARGV[1])
if hit(KEYS[1], window_s) > tonumber(ARGV[2]) then return {1, redis.call('TTL', KEYS[1])} end
local cooldown_s = tonumber(ARGV[3])
if cooldown_s > 0 and not redis.call('SET', KEYS[2], 1, 'EX', cooldown_s, 'NX') then
  return {2, redis.call('TTL', KEYS[2])}
end
if hit(KEYS[3], window_s) > tonumber(ARGV[4]) then return {3, redis.call('TTL', KEYS[3])} end
redis.call('DEL', KEYS[4])
redis.call('HSET', KEYS[4], 'digest', ARGV[5], 'attempts', 0)
redis.call('EXPIRE', KEYS[4], tonumber(ARGV[6]))
return {0, 0}
"""
_ISSUED = 0
_REFUSALS = {
    1: "too many code requests from this address",
    2: "a code was sent recently; wait before asking again",
    3: "too many codes requested for this phone; try later",
}


def otp_expired() -> ApiError:
    return ApiError(401, "otp_expired", "the code has expired or was used up; request a new one")


class OtpStore:
    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._secret = settings.jwt_secret.encode()
        self._prefix = settings.redis_key_prefix
        self._verify = redis.register_script(_VERIFY_SCRIPT)
        self._issue = redis.register_script(_ISSUE_SCRIPT)

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    def _digest(self, phone: str, otp: str) -> str:
        return hmac.new(self._secret, f"otp:{phone}:{otp}".encode(), hashlib.sha256).hexdigest()

    async def _count(self, key: str, window_s: int) -> tuple[int, int]:
        """Fixed-window counter: (count after this hit, seconds until the window ends)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(key, 0, ex=window_s, nx=True)
            pipe.incr(key)
            pipe.ttl(key)
            _, count, ttl = await pipe.execute()
        return int(count), max(1, int(ttl))

    async def issue(self, phone: str, ip: str) -> str:
        """A fresh OTP for `phone`, or 429 with Retry-After when a limit is reached."""
        settings = self._settings
        otp = f"{secrets.randbelow(10**OTP_DIGITS):0{OTP_DIGITS}d}"
        refusal, wait_s = await self._issue(
            keys=[
                self._key("ratelimit", "otp-ip", ip),
                self._key("otp-cooldown", phone),
                self._key("ratelimit", "otp-phone", phone),
                self._key("otp", phone),
            ],
            args=[
                HOUR_S,
                settings.auth_ip_rate_limit,
                settings.otp_resend_cooldown_s,
                settings.otp_per_phone_hour_max,
                self._digest(phone, otp),
                settings.otp_ttl_s,
            ],
        )
        if refusal != _ISSUED:
            raise rate_limited(int(wait_s), _REFUSALS[int(refusal)])
        return otp

    async def discard(self, phone: str) -> None:
        """Forget the phone's current OTP (its SMS could not be sent)."""
        await self._redis.delete(self._key("otp", phone), self._key("otp-cooldown", phone))

    async def verify(self, phone: str, otp: str, ip: str) -> None:
        """Accept `otp` once, or raise otp_invalid / otp_expired / rate_limited."""
        count, ttl = await self._count(self._key("ratelimit", "verify-ip", ip), HOUR_S)
        if count > self._settings.auth_verify_ip_rate_limit:
            raise rate_limited(ttl, "too many verification attempts from this address")
        result = await self._verify(
            keys=[self._key("otp", phone)],
            args=[self._digest(phone, otp), self._settings.otp_attempts_max],
        )
        if result == 1:
            return
        if result == 0:
            raise ApiError(401, "otp_invalid", "the code is not correct")
        raise otp_expired()
