"""SMS delivery for OTP login: the provider interface and its three implementations.

This module owns how a one-time-password message leaves the process (SPEC §4, §9):

- `outbox`  appends one JSON line per message to a file; the default for local runs and
            tests, which read the OTP back from it.
- `console` logs the message, OTP included; a development provider only.
- `twilio`  sends through Twilio's REST API over HTTP.

It does not own OTP generation, hashing, rate limits or message wording: the caller
builds `body` and passes the bare `otp` alongside it so that the development providers
can record it in a structured field. Every failure surfaces as `SmsError`, whose message
is safe to log: it never carries the OTP, the message body or a credential.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import quote

import httpx
import msgspec
from loguru import logger

from probo.infra import metrics

# One retry at most: the caller is an HTTP request waiting on this send, so a long
# retry loop would just turn a provider outage into a slow login page.
SEND_TRIES_MAX = 2
# Short, so a retried send still answers well within a request's patience.
SEND_RETRY_BACKOFF_S = 0.25
# 429 and every 5xx mean "try again later" on Twilio; anything else in 4xx is our
# request's fault (bad number, bad credentials) and repeating it cannot help.
TOO_MANY_REQUESTS = 429
# The outbox holds live OTPs, so it is created readable by its owner only.
OUTBOX_FILE_MODE = 0o600
# Connections to Twilio at once. Twilio refuses an account's requests beyond its
# concurrency limit (error 20429; 100 by default), so one process stays well under it
# and leaves room for anything else sharing the account. A send takes a few hundred
# ms, so 50 still carry a burst of a hundred or more logins a second.
TWILIO_CONNECTIONS_MAX = 50
# How long a send waits for one of them when all are busy, before giving up on this
# send: the same patience as the Redis and Postgres pools.
TWILIO_POOL_WAIT_S = 5.0


class SmsError(Exception):
    """The provider could not send. The message is safe to log: no OTP, no credentials."""


@runtime_checkable
class SmsProvider(Protocol):
    async def send(self, to: str, body: str, otp: str) -> None:
        """Deliver `body` to the E.164 number `to`; raise `SmsError` if it cannot."""
        ...

    async def close(self) -> None:
        """Release connections or handles; the provider is not used afterwards."""
        ...


class OutboxSms:
    """Appends `{"to", "body", "otp", "sent_at"}` as one JSON line per message."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    async def send(self, to: str, body: str, otp: str) -> None:
        record = {
            "to": to,
            "body": body,
            "otp": otp,
            "sent_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        # msgspec escapes any newline inside the strings, so the record is exactly one line.
        line = msgspec.json.encode(record) + b"\n"
        # File IO blocks; run it off the event loop so other requests keep flowing.
        await asyncio.to_thread(self._append_line, line)

    def _append_line(self, line: bytes) -> None:
        try:
            # Created on every send rather than once: tests and operators may delete the
            # directory between runs, and mkdir on an existing directory is cheap.
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # O_APPEND makes the kernel seek to the end and write atomically with respect
            # to other appenders (threads, and other server processes sharing the file), as
            # long as the whole line goes down in one write() call, which an unbuffered
            # descriptor guarantees, unlike a buffered file object that may split it.
            file_descriptor = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, OUTBOX_FILE_MODE
            )
            try:
                written = os.write(file_descriptor, line)
                # A regular file does not take short writes in practice; if one ever
                # happens, finishing the line beats leaving a truncated record behind.
                while written < len(line):
                    written += os.write(file_descriptor, line[written:])
            finally:
                os.close(file_descriptor)
        except OSError as error:
            raise SmsError(
                f"could not append to SMS outbox {self.path}: {error.strerror or error}"
            ) from None

    async def close(self) -> None:
        # Nothing is held open between sends.
        return None


class ConsoleSms:
    """Logs each message, OTP included, at INFO: for development only."""

    async def send(self, to: str, body: str, otp: str) -> None:
        # Positional arguments, not an f-string: loguru would otherwise treat braces
        # inside the body as format fields.
        logger.bind(to=to).info("SMS (console provider) to {}: {} [otp {}]", to, body, otp)

    async def close(self) -> None:
        return None


class TwilioSms:
    """Sends through Twilio's Messages API with one shared HTTP client."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str,
        base_url: str = "https://api.twilio.com",
        timeout_s: float = 10.0,
        connections_max: int = TWILIO_CONNECTIONS_MAX,
        pool_wait_s: float = TWILIO_POOL_WAIT_S,
    ) -> None:
        self.account_sid = account_sid
        self.from_number = from_number
        # The SID comes from the environment; quoting keeps a stray character from
        # changing which URL we post to.
        self._messages_path = f"/2010-04-01/Accounts/{quote(account_sid, safe='')}/Messages.json"
        # One client for the life of the process so sends reuse TLS connections. The
        # token lives only inside the client's auth, never on `self`, so it cannot leak
        # through a repr or a debugger dump of this object.
        # Idle connections are all kept (for httpx's keep-alive expiry), so the sends
        # after a burst reuse its TLS sessions instead of handshaking again.
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            auth=httpx.BasicAuth(account_sid, auth_token),
            timeout=httpx.Timeout(timeout_s, pool=pool_wait_s),
            limits=httpx.Limits(
                max_connections=connections_max, max_keepalive_connections=connections_max
            ),
            headers={"Accept": "application/json"},
        )
        self._pool_wait_s = pool_wait_s

    async def send(self, to: str, body: str, otp: str) -> None:
        # `otp` is already inside `body`; Twilio needs nothing else. Neither is ever put
        # into a log line or an exception message below.
        form = {"To": to, "From": self.from_number, "Body": body}
        failure = "no attempt made"
        for attempt in range(1, SEND_TRIES_MAX + 1):
            try:
                response = await self._client.post(self._messages_path, data=form)
            except httpx.PoolTimeout:
                # Every connection stayed busy: this process is over its share of
                # Twilio's concurrency, and trying again would only queue again.
                metrics.POOL_EXHAUSTED.labels("twilio").inc()
                raise SmsError(
                    f"no free connection to Twilio within {self._pool_wait_s} s"
                ) from None
            except httpx.TransportError as error:
                # Connection refused, reset or timed out. After a timeout Twilio may have
                # sent the message anyway; a retry can then deliver the same OTP twice,
                # which the user simply ignores, whereas giving up means no login.
                failure = f"network error talking to Twilio: {_describe_transport_error(error)}"
                retryable = True
            except (httpx.HTTPError, httpx.InvalidURL) as error:
                # Misconfiguration (bad base URL, redirect loop): repeating cannot help.
                # `from None` keeps httpx's request (with its Authorization header) out
                # of the exception chain that a logger might render.
                raise SmsError(f"could not call Twilio: {type(error).__name__}") from None
            else:
                if response.is_success:
                    return
                failure = _describe_error_response(response)
                retryable = response.status_code >= 500 or response.status_code == TOO_MANY_REQUESTS
            if not retryable or attempt == SEND_TRIES_MAX:
                break
            # No recipient here: the caller logs the final outcome with the phone masked
            # its own way, and a full number in a routine warning is needless exposure.
            logger.warning(
                "Twilio send attempt {}/{} failed ({}); retrying", attempt, SEND_TRIES_MAX, failure
            )
            await asyncio.sleep(SEND_RETRY_BACKOFF_S)
        raise SmsError(failure)

    async def close(self) -> None:
        await self._client.aclose()


def _describe_transport_error(error: httpx.TransportError) -> str:
    # httpx messages such as "[Errno 111] Connection refused" carry no request data;
    # many (timeouts) are empty, so the class name is what tells them apart.
    detail = str(error)
    return f"{type(error).__name__}: {detail}" if detail else type(error).__name__


def _describe_error_response(response: httpx.Response) -> str:
    """Status plus Twilio's numeric error code; never Twilio's free-text message.

    Twilio's `message` can quote the request back (the destination number, sometimes
    content), so only the documented numeric `code` is trusted into a loggable string.
    """
    description = f"Twilio answered HTTP {response.status_code}"
    try:
        payload = response.json()
    except ValueError:
        return description
    if isinstance(payload, dict):
        code = payload.get("code")
        if isinstance(code, int) and not isinstance(code, bool):
            description += f" (Twilio error code {code})"
        elif isinstance(code, str) and code.isdigit():
            description += f" (Twilio error code {code})"
    return description


def build_sms_provider(
    provider: str,
    *,
    outbox_path: Path,
    twilio_account_sid: str,
    twilio_auth_token: str,
    twilio_from: str,
    twilio_base_url: str,
) -> SmsProvider:
    """The provider named by `PROBO_SMS_PROVIDER`, built from the settings' values."""
    if provider == "outbox":
        return OutboxSms(outbox_path)
    if provider == "console":
        return ConsoleSms()
    if provider == "twilio":
        # Settings validation already demands these; checked again because a Twilio
        # client with empty credentials would only fail later, on a user's login.
        if not (twilio_account_sid and twilio_auth_token and twilio_from):
            raise ValueError(
                "the twilio SMS provider needs an account SID, auth token and from number"
            )
        return TwilioSms(
            twilio_account_sid,
            twilio_auth_token,
            twilio_from,
            base_url=twilio_base_url,
        )
    raise ValueError(f"unknown SMS provider {provider!r}; expected outbox, console or twilio")
