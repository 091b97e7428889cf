"""The HTTP/1.1 load generator of `bench.load`, run in its own process.

    python -m bench.loadgen PLAN RESULT     # reads a msgpack `Plan`, writes a msgpack `Result`

A raw asyncio client on uvloop: each connection is an `asyncio.Protocol` with at most
one request in flight (keep-alive, no pipelining). Requests are pre-encoded bytes,
sent round-robin from the plan's pool; a response is read as far as its status line
and Content-Length, so the client spends next to nothing per request.

Two modes:

- `closed`: every connection sends its next request as soon as the last one is
  answered. With many connections the offered load is unbounded: the rate of answers
  is the server's saturation rate.
- `open`: a fixed rate, split over the connections as in wrk2: connection `c` of `C`
  sends request `k` at `start + (c + k*C) / rate`. Latency counts from that scheduled
  time, not from when it was sent, so a server that stalls is charged for every
  request it held back (no coordinated omission); a request the event loop's coarse
  timers sent early counts from its send. The lag between the scheduled time and the
  actual send is reported too: the generator's own share of the latency.

All processes of one run start at the plan's wall-clock `start_at`. The measured
window is `[start_at + warmup_s, start_at + warmup_s + duration_s)`: answers within it
count towards the rate and the latencies, answers before it (the warm-up) only towards
the totals. The generator's CPU time over the window is reported so a run can show it
was not the bottleneck.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from collections import Counter
from typing import Literal

import msgspec
import uvloop

HEADER_END = b"\r\n\r\n"
CONTENT_LENGTH = b"content-length:"
STATUS_SLICE = slice(9, 12)  # "HTTP/1.1 201 ..."
CONNECT_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 15.0  # longest wait for answers in flight when the window ends
ERROR_SAMPLES_MAX = 5
ERROR_BODY_CHARS_MAX = 300


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    host: str
    port: int
    mode: Literal["closed", "open"]
    connections: int
    start_at: float  # time.time() at which the first requests go out
    warmup_s: float
    duration_s: float
    rate: float = 0.0  # requests/s of this process, open mode only
    requests: list[bytes]
    first_request: int = 0  # where in `requests` this process starts


class Result(msgspec.Struct, kw_only=True):
    statuses: dict[int, int]  # every answer, warm-up included
    window_statuses: dict[int, int]  # answers within the measured window
    window_s: float
    latencies_s: list[float]  # per answer within the window
    send_lags_s: list[float]  # open mode: actual send - scheduled send
    cpu_s: float  # this process's CPU time (user + system) over the window
    connection_errors: int
    unanswered: int  # requests still in flight after the drain timeout
    error_samples: list[str]  # bodies of the first non-2xx answers


class ConnectionClosed(ConnectionError):
    pass


class Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.last_error_body = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None:
            return
        status = self._take_response()
        if status:
            waiter, self.waiter = self.waiter, None
            if not waiter.done():
                waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionClosed(str(exc)))
        self.waiter = None

    def _take_response(self) -> int:
        """The status of a complete response at the front of the buffer (removed), else 0."""
        buffer = self.buffer
        end = buffer.find(HEADER_END)
        if end < 0:
            return 0
        head = bytes(buffer[:end]).lower()
        at = head.find(CONTENT_LENGTH)
        length = 0
        if at >= 0:
            line_end = head.find(b"\r\n", at)
            length = int(head[at + len(CONTENT_LENGTH) : line_end if line_end >= 0 else None])
        total = end + len(HEADER_END) + length
        if len(buffer) < total:
            return 0
        status = int(buffer[STATUS_SLICE])
        if status >= 300:
            self.last_error_body = bytes(buffer[end + len(HEADER_END) : total])
        del buffer[:total]
        return status

    def request(self, data: bytes) -> asyncio.Future[int]:
        if self.transport is None:
            raise ConnectionClosed("not connected")
        waiter = asyncio.get_running_loop().create_future()
        self.waiter = waiter
        self.transport.write(data)
        return waiter


class Recorder:
    """Counts answers, and keeps latencies of those inside the measured window."""

    def __init__(self, window_start: float, window_end: float) -> None:
        self.window_start = window_start
        self.window_end = window_end
        self.statuses: Counter[int] = Counter()
        self.window_statuses: Counter[int] = Counter()
        self.latencies: list[float] = []
        self.send_lags: list[float] = []
        self.connection_errors = 0
        self.error_samples: list[str] = []

    def answer(self, status: int, since: float, done: float, connection: Connection) -> None:
        self.statuses[status] += 1
        if self.window_start <= done < self.window_end:
            self.window_statuses[status] += 1
            self.latencies.append(done - since)
        if status >= 300 and len(self.error_samples) < ERROR_SAMPLES_MAX:
            body = connection.last_error_body[:ERROR_BODY_CHARS_MAX]
            self.error_samples.append(f"{status} {body.decode(errors='replace')}")


async def _connect(plan: Plan) -> Connection:
    loop = asyncio.get_running_loop()
    _, connection = await asyncio.wait_for(
        loop.create_connection(Connection, plan.host, plan.port), CONNECT_TIMEOUT_S
    )
    return connection


async def _closed_worker(
    index: int, plan: Plan, connection: Connection, recorder: Recorder, start: float
) -> None:
    requests = plan.requests
    count = len(requests)
    at = plan.first_request + index
    clock = time.perf_counter
    stop = recorder.window_end
    await asyncio.sleep(max(0.0, start - clock()))
    while True:
        sent = clock()
        if sent >= stop:
            return
        try:
            status = await connection.request(requests[at % count])
        except ConnectionClosed:
            recorder.connection_errors += 1
            connection = await _connect(plan)
            continue
        recorder.answer(status, sent, clock(), connection)
        at += plan.connections


async def _open_worker(
    index: int, plan: Plan, connection: Connection, recorder: Recorder, start: float
) -> None:
    requests = plan.requests
    count = len(requests)
    at = plan.first_request + index
    clock = time.perf_counter
    stop = recorder.window_end
    interval = plan.connections / plan.rate
    scheduled = start + index / plan.rate
    while scheduled < stop:
        now = clock()
        if scheduled > now:
            await asyncio.sleep(scheduled - now)
        sent = clock()
        try:
            status = await connection.request(requests[at % count])
        except ConnectionClosed:
            recorder.connection_errors += 1
            connection = await _connect(plan)
            continue
        done = clock()
        # A timer that fired early must not shorten the latency: count from the send then.
        recorder.answer(status, max(scheduled, sent), done, connection)
        if recorder.window_start <= done < recorder.window_end:
            recorder.send_lags.append(sent - scheduled)
        at += plan.connections
        scheduled += interval


async def _cpu_over_window(recorder: Recorder) -> float:
    clock = time.perf_counter
    await asyncio.sleep(max(0.0, recorder.window_start - clock()))
    before = time.process_time()
    await asyncio.sleep(max(0.0, recorder.window_end - clock()))
    return time.process_time() - before


async def run(plan: Plan) -> Result:
    connections = await asyncio.gather(*(_connect(plan) for _ in range(plan.connections)))
    # The shared wall-clock start, on this process's monotonic clock.
    start = time.perf_counter() + (plan.start_at - time.time())
    recorder = Recorder(start + plan.warmup_s, start + plan.warmup_s + plan.duration_s)
    worker = _closed_worker if plan.mode == "closed" else _open_worker
    cpu = asyncio.create_task(_cpu_over_window(recorder))
    workers = [
        asyncio.create_task(worker(i, plan, connection, recorder, start))
        for i, connection in enumerate(connections)
    ]
    await asyncio.wait(workers, timeout=recorder.window_end - time.perf_counter() + DRAIN_TIMEOUT_S)
    unanswered = sum(not w.done() for w in workers)
    for w in workers:
        w.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    for connection in connections:
        if connection.transport is not None:
            connection.transport.close()
    return Result(
        statuses=dict(recorder.statuses),
        window_statuses=dict(recorder.window_statuses),
        window_s=plan.duration_s,
        latencies_s=recorder.latencies,
        send_lags_s=recorder.send_lags,
        cpu_s=await cpu,
        connection_errors=recorder.connection_errors,
        unanswered=unanswered,
        error_samples=recorder.error_samples,
    )


def main() -> None:
    with open(sys.argv[1], "rb") as file:
        plan = msgspec.msgpack.decode(file.read(), type=Plan)
    # Nothing allocated here lives long enough to need the collector during the run.
    gc.collect()
    gc.freeze()
    gc.disable()
    result = uvloop.run(run(plan))
    with open(sys.argv[2], "wb") as file:
        file.write(msgspec.msgpack.encode(result))


if __name__ == "__main__":
    main()
