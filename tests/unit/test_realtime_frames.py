"""Frames the feeds write themselves, read back by the `websockets` library's own parser;
the bounded send paths of a `Subscriber`."""

from __future__ import annotations

import asyncio

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from probo.realtime.frames import text_frame
from probo.realtime.subscriber import SEND_QUEUE_MAX, Subscriber


def _parse(data: bytes) -> list[Frame]:
    """What a client (the library's sans-I/O protocol, connection open) makes of `data`."""
    client = ClientProtocol(parse_uri("ws://probo.test/api/v1/ws"), state=State.OPEN)
    client.receive_data(data)
    assert client.parser_exc is None, client.parser_exc
    return [event for event in client.events_received() if isinstance(event, Frame)]


@pytest.mark.parametrize("length", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_text_frames_of_every_length_class_parse_back(length: int) -> None:
    payload = ("é" * (length // 2) + "x" * (length % 2)).encode()
    [frame] = _parse(text_frame(payload))
    assert (frame.opcode, frame.fin, frame.data) == (Opcode.TEXT, True, payload)


def test_frames_written_together_parse_as_separate_messages() -> None:
    payloads = [b'{"type":"book"}', b"x" * 300, b'{"type":"trade"}']
    frames = _parse(b"".join(text_frame(p) for p in payloads))
    assert [f.data for f in frames] == payloads


class _FakeSocket:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.blocked = asyncio.Event()

    async def send_text(self, data: str) -> None:
        await self.blocked.wait()  # a peer that reads nothing
        self.sent.append(data)


async def test_a_queued_connection_that_falls_behind_is_kicked() -> None:
    subscriber = Subscriber(None)
    assert not subscriber.direct
    sender = subscriber.start(_FakeSocket())
    assert sender is not None
    accepted = 0
    while subscriber.offer(text_frame(b"{}"), (b"{}",)):
        accepted += 1
        assert accepted <= SEND_QUEUE_MAX + 1
    assert subscriber.kicked
    assert SEND_QUEUE_MAX <= accepted <= SEND_QUEUE_MAX + 1  # the sender may hold one
    await asyncio.sleep(0)
    assert sender.cancelled() or sender.done()
    assert not subscriber.offer(text_frame(b"{}"), (b"{}",))


async def test_the_suite_runs_on_uvloop_as_probo_serve_does() -> None:
    assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
