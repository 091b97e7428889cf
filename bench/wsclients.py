"""The WebSocket subscribers of `bench.ws`, run in their own process.

    python -m bench.wsclients PLAN RESULT   # reads a msgpack `Plan`, writes a msgpack `Result`

`connections` clients connect to probo's `/api/v1/ws` in batches of `batch`, each
subscribes to the plan's market channel and waits for its snapshot. A client is a bare
asyncio protocol on uvloop (an HTTP/1.1 upgrade, then RFC 6455 frames parsed in
`data_received`, no task per connection): at thousands of messages a second on two
cores, what the subscribers cost is taken from the server, so they are kept cheap.
With `compression` it offers permessage-deflate as browsers do, and inflates if the
server takes it. When all have theirs the process prints `ready` on
stdout and reads two lines from stdin: the measured window (`<start> <end>`, wall-clock
time.time()), then `stop`, at which it closes the connections and writes its `Result`.

Every message on every connection is read. All subscribers of a room receive the same
bytes (the server encodes a message once per room), so each distinct message is decoded
once, kept by its bytes (a dict lookup compares the whole payload, so a connection is
only credited with a message identical to the one decoded); per connection and message
the client does a dictionary lookup, a seq check for `book` messages and appends
(message, receive time) to the connection's log. Latencies are computed after `stop`,
outside of any measurement: for every trade of every `trade` message received on every
connection, receive time - the trade's `created_at` (the engine's decision time, so an
upper bound of commit-to-client latency), for trades created inside the window.

Checked per connection: the snapshot arrives first; `book` seqs follow the snapshot's
one by one (a gap or repeat is counted); trade ids arrive strictly increasing. For a
connection still open at `stop`, its trade ids (count, first, last, sum) are reported
so the parent can compare them with the trades table. A connection the server closes
(4008: its send queue filled) is counted by close code and not reconnected.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import os
import struct
import sys
import time
import zlib
from collections import Counter
from datetime import datetime
from urllib.parse import urlsplit

import msgspec
import uvloop

OPEN_TIMEOUT_S = 30.0
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
HISTOGRAM_STEP_S = 0.0001  # latency histogram buckets of 0.1 ms
HISTOGRAM_MAX_S = 120.0
ERROR_SAMPLES_MAX = 5


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    url: str  # ws://host:port/api/v1/ws
    channel: str  # market:<id>
    connections: int
    batch: int  # connections opened concurrently
    compression: str | None  # "deflate" (what browsers offer) or None


class Result(msgspec.Struct, kw_only=True):
    connected: int  # connections that got their snapshot
    connect_s: float  # from the first connect to the last snapshot
    window_s: float
    cpu_s: float  # this process's CPU time (user + system) over the window
    window_messages: int  # messages received inside the window, all connections
    window_bytes: int  # their payload bytes (after any decompression)
    window_messages_min: int  # the least any connection that stayed open received
    window_messages_max: int
    messages_by_type: dict[str, int]  # all connections, from the snapshot to `stop`
    distinct_messages: int
    close_codes: dict[int, int]  # connections the server closed before `stop`, by code
    errors: list[str]  # connect failures and other exceptions (first few)
    seq_gaps: int  # book messages whose seq was not the previous one + 1
    seq_gap_samples: list[str]
    disorder: int  # trade ids not above the previous one on the same connection
    # Trade ids of connections still open at `stop`: (count, first, last, sum) -> connections.
    trade_id_summaries: list[tuple[int, int, int, int, int]]
    latency_count: int
    latency_histogram: dict[int, int]  # bucket (HISTOGRAM_STEP_S) -> trades
    latency_max_s: float
    latency_min_s: float
    compressed: int  # connections on which the server took permessage-deflate


class _Snapshot(msgspec.Struct):
    seq: int


class _Book(msgspec.Struct, tag_field="type", tag="book"):
    seq: int


class _Trade(msgspec.Struct):
    id: int
    created_at: datetime


class _Trades(msgspec.Struct, tag_field="type", tag="trade"):
    trades: list[_Trade]


class _Other(msgspec.Struct, tag_field="type", tag="market"):
    pass


_decode_snapshot = msgspec.json.Decoder(_Snapshot).decode
_decode = msgspec.json.Decoder(_Book | _Trades | _Other).decode

BOOK, TRADE, OTHER = 0, 1, 2
TYPE_NAMES = ("book", "trade", "market")


class Messages:
    """Every distinct message received, decoded once."""

    def __init__(self) -> None:
        self.index: dict[bytes, int] = {}
        self.kinds: list[int] = []
        self.seqs: list[int] = []  # book: its seq; else 0
        self.trade_ids: list[list[int]] = []  # trade: its ids, oldest first
        self.created: list[list[float]] = []  # trade: created_at as time.time() values

    def add(self, raw: bytes) -> int:
        message = _decode(raw)
        at = len(self.kinds)
        if type(message) is _Book:
            self.kinds.append(BOOK)
            self.seqs.append(message.seq)
            self.trade_ids.append([])
            self.created.append([])
        elif type(message) is _Trades:
            self.kinds.append(TRADE)
            self.seqs.append(0)
            self.trade_ids.append([t.id for t in message.trades])
            self.created.append([t.created_at.timestamp() for t in message.trades])
        else:
            self.kinds.append(OTHER)
            self.seqs.append(0)
            self.trade_ids.append([])
            self.created.append([])
        self.index[raw] = at
        return at


class Subscriber:
    __slots__ = ("received", "times", "seq", "gaps", "gap_samples", "window_messages",
                 "window_bytes", "close_code", "open")  # fmt: skip

    def __init__(self) -> None:
        self.received: list[int] = []  # distinct-message index, per message received
        self.times: list[float] = []  # its receive time
        self.seq = 0
        self.gaps = 0
        self.gap_samples: list[str] = []
        self.window_messages = 0
        self.window_bytes = 0
        self.close_code: int | None = None
        self.open = False


class ConnectionFailed(Exception):
    pass


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """A final, masked frame (clients must mask; a zero mask keeps it cheap)."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return header + b"\0\0\0\0" + payload


class Connection(asyncio.Protocol):
    """One subscriber's socket: the upgrade, then every frame as it arrives."""

    def __init__(self, clients: Clients, subscriber: Subscriber) -> None:
        self.clients = clients
        self.subscriber = subscriber
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.inflate: zlib._Decompress | None = None
        self.fragments: list[bytes] = []
        self.fragment_compressed = False
        self.snapshot: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.subscriber.open = False
        if self.subscriber.close_code is None and not self.clients.stopping:
            self.subscriber.close_code = 1006
        if not self.snapshot.done():
            self.snapshot.set_exception(ConnectionFailed(f"connection lost: {exc!r}"))
            self.snapshot.exception()  # retrieved: `open` reports it
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self._upgrade(bytes(buffer[:end]).decode("latin-1"))
            del buffer[: end + 4]
        offset = 0
        size = len(buffer)
        while size - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1] & 0x7F
            head = offset + 2
            if second == 126:
                if size - offset < 4:
                    break
                second = (buffer[head] << 8) | buffer[head + 1]
                head += 2
            elif second == 127:
                if size - offset < 10:
                    break
                second = int.from_bytes(buffer[head : head + 8], "big")
                head += 8
            end = head + second
            if end > size:
                break
            self._frame(first, bytes(buffer[head:end]))
            offset = end
        if offset:
            del buffer[:offset]

    def _upgrade(self, response: str) -> None:
        status, _, rest = response.partition("\r\n")
        if not status.startswith("HTTP/1.1 101"):
            if not self.snapshot.done():
                self.snapshot.set_exception(ConnectionFailed(f"upgrade refused: {status}"))
            assert self.transport is not None
            self.transport.close()
            return
        for line in rest.split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "sec-websocket-extensions" and "permessage-deflate" in value:
                self.inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        self.upgraded = True
        assert self.transport is not None
        subscribe = {"op": "subscribe", "channel": self.clients.plan.channel}
        self.transport.write(_client_frame(0x1, msgspec.json.encode(subscribe)))

    def _frame(self, first: int, payload: bytes) -> None:
        opcode = first & 0x0F
        if opcode == 0x9:  # ping
            assert self.transport is not None
            self.transport.write(_client_frame(0xA, payload))
            return
        if opcode == 0x8:  # close
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            if not self.clients.stopping:
                self.subscriber.close_code = code
            assert self.transport is not None
            if not self.transport.is_closing():
                self.transport.write(_client_frame(0x8, payload[:2]))
                self.transport.close()
            return
        if opcode in (0x1, 0x2):
            self.fragments = [payload]
            self.fragment_compressed = bool(first & 0x40)
        elif opcode == 0x0:
            self.fragments.append(payload)
        else:
            return  # pong
        if not first & 0x80:
            return
        message = self.fragments[0] if len(self.fragments) == 1 else b"".join(self.fragments)
        self.fragments = []
        if self.fragment_compressed:
            assert self.inflate is not None, "a compressed frame without the extension"
            message = self.inflate.decompress(message + b"\x00\x00\xff\xff")
        if not self.snapshot.done():
            self.snapshot.set_result(message)
            return
        self.clients.received(self.subscriber, message)


class Clients:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.messages = Messages()
        self.subscribers = [Subscriber() for _ in range(plan.connections)]
        self.window = (float("inf"), float("inf"))
        self.errors: list[str] = []
        self.stopping = False
        url = urlsplit(plan.url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.path = url.path + (f"?{url.query}" if url.query else "")

    def error(self, text: str) -> None:
        if len(self.errors) < ERROR_SAMPLES_MAX:
            self.errors.append(text)

    async def open(self, subscriber: Subscriber) -> Connection | None:
        plan = self.plan
        loop = asyncio.get_running_loop()
        key = base64.b64encode(os.urandom(16)).decode()
        offer = (
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
            if plan.compression
            else ""
        )
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(lambda: Connection(self, subscriber), self.host, self.port),
                OPEN_TIMEOUT_S,
            )
            assert connection.transport is not None
            connection.transport.write(
                (
                    f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
                ).encode()
            )
            raw = await asyncio.wait_for(asyncio.shield(connection.snapshot), OPEN_TIMEOUT_S)
        except (OSError, TimeoutError, ConnectionFailed) as exc:
            self.error(f"connect: {exc!r}")
            return None
        if not raw.startswith(b'{"type":"snapshot"'):
            self.error(f"first message not a snapshot: {raw[:200]!r}")
            assert connection.transport is not None
            connection.transport.close()
            return None
        subscriber.seq = _decode_snapshot(raw).seq
        subscriber.open = True
        return connection

    def received(self, subscriber: Subscriber, raw: bytes) -> None:
        now = time.time()
        messages = self.messages
        at = messages.index.get(raw)
        if at is None:
            try:
                at = messages.add(raw)
            except msgspec.DecodeError as exc:  # not what the API says
                self.error(f"read: {exc!r}")
                subscriber.close_code = -1
                return
        subscriber.received.append(at)
        subscriber.times.append(now)
        if messages.kinds[at] == BOOK:
            seq = messages.seqs[at]
            if seq != subscriber.seq + 1:
                subscriber.gaps += 1
                if len(subscriber.gap_samples) < ERROR_SAMPLES_MAX:
                    subscriber.gap_samples.append(f"seq {subscriber.seq} then {seq}")
            subscriber.seq = seq
        start, end = self.window
        if start <= now < end:
            subscriber.window_messages += 1
            subscriber.window_bytes += len(raw)


async def run(plan: Plan) -> Result:
    clients = Clients(plan)
    loop = asyncio.get_running_loop()
    connections: list[Connection | None] = []
    started = time.perf_counter()
    for first in range(0, plan.connections, plan.batch):
        batch = clients.subscribers[first : first + plan.batch]
        connections += await asyncio.gather(*(clients.open(s) for s in batch))
    connect_s = time.perf_counter() - started
    connected = sum(c is not None for c in connections)
    print(f"ready {connected} {connect_s:.2f}", flush=True)

    line = await loop.run_in_executor(None, sys.stdin.readline)
    start, end = (float(x) for x in line.split())
    clients.window = (start, end)
    await asyncio.sleep(max(0.0, start - time.time()))
    cpu_before = time.process_time()
    await asyncio.sleep(max(0.0, end - time.time()))
    cpu_s = time.process_time() - cpu_before
    await loop.run_in_executor(None, sys.stdin.readline)  # "stop"

    clients.stopping = True
    still_open = [s.open for s in clients.subscribers]
    for connection in connections:
        if connection is not None and connection.transport is not None:
            if not connection.transport.is_closing():
                connection.transport.write(_client_frame(0x8, struct.pack("!H", 1000)))
    await asyncio.wait(
        [asyncio.ensure_future(c.closed) for c in connections if c is not None],
        timeout=OPEN_TIMEOUT_S,
    )
    for connection in connections:
        if connection is not None and connection.transport is not None:
            connection.transport.abort()
    compressed = sum(c is not None and c.inflate is not None for c in connections)
    return _result(clients, connected, connect_s, still_open, end - start, cpu_s, compressed)


def _result(
    clients: Clients,
    connected: int,
    connect_s: float,
    still_open: list[bool],
    window_s: float,
    cpu_s: float,
    compressed: int,
) -> Result:
    messages = clients.messages
    start, end = clients.window
    kinds, trade_ids, created = messages.kinds, messages.trade_ids, messages.created
    by_type: Counter[str] = Counter()
    close_codes: Counter[int] = Counter()
    summaries: Counter[tuple[int, int, int, int]] = Counter()
    histogram: Counter[int] = Counter()
    latency_count = 0
    latency_max = -float("inf")
    latency_min = float("inf")
    disorder = 0
    step = HISTOGRAM_STEP_S
    top = int(HISTOGRAM_MAX_S / step)
    # Per trade message: its trades created inside the window.
    in_window = [[c for c in cs if start <= c < end] for cs in created]
    for subscriber, was_open in zip(clients.subscribers, still_open, strict=True):
        if subscriber.close_code is not None:
            close_codes[subscriber.close_code] += 1
        count = first = last = total = 0
        for at, now in zip(subscriber.received, subscriber.times, strict=True):
            kind = kinds[at]
            by_type[TYPE_NAMES[kind]] += 1
            if kind != TRADE:
                continue
            for trade_id in trade_ids[at]:
                if trade_id <= last:
                    disorder += 1
                if not count:
                    first = trade_id
                last = trade_id
                count += 1
                total += trade_id
            window_created = in_window[at]
            if window_created:
                latency_count += len(window_created)
                oldest, newest = now - window_created[0], now - window_created[-1]
                latency_max = max(latency_max, oldest, newest)
                latency_min = min(latency_min, oldest, newest)
                for c in window_created:
                    histogram[min(top, int((now - c) / step))] += 1
        if was_open:
            summaries[(count, first, last, total)] += 1
    stayed = [
        s.window_messages
        for s, was_open in zip(clients.subscribers, still_open, strict=True)
        if was_open
    ]
    return Result(
        connected=connected,
        connect_s=connect_s,
        window_s=window_s,
        cpu_s=cpu_s,
        window_messages=sum(s.window_messages for s in clients.subscribers),
        window_bytes=sum(s.window_bytes for s in clients.subscribers),
        window_messages_min=min(stayed, default=0),
        window_messages_max=max(stayed, default=0),
        messages_by_type=dict(by_type),
        distinct_messages=len(kinds),
        close_codes=dict(close_codes),
        errors=clients.errors,
        seq_gaps=sum(s.gaps for s in clients.subscribers),
        seq_gap_samples=[x for s in clients.subscribers for x in s.gap_samples][:ERROR_SAMPLES_MAX],
        disorder=disorder,
        trade_id_summaries=[(*key, n) for key, n in summaries.items()],
        latency_count=latency_count,
        latency_histogram=dict(histogram),
        latency_max_s=latency_max if latency_count else float("nan"),
        latency_min_s=latency_min if latency_count else float("nan"),
        compressed=compressed,
    )


def main() -> None:
    with open(sys.argv[1], "rb") as file:
        plan = msgspec.msgpack.decode(file.read(), type=Plan)
    gc.collect()
    gc.freeze()
    # The logs grow by a few million list items; nothing here makes cycles worth chasing.
    gc.disable()
    result = uvloop.run(run(plan))
    with open(sys.argv[2], "wb") as file:
        file.write(msgspec.msgpack.encode(result))


if __name__ == "__main__":
    main()
