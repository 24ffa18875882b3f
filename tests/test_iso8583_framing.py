"""Framing: length headers (2-byte binary, 4-digit ASCII), TPDU, and the incremental splitter
fed the way asyncio's data_received feeds it (arbitrary pieces)."""

from __future__ import annotations

import random

import pytest

from switch.iso8583.framing import (
    DEFAULT_FRAMING,
    Frame,
    FrameSplitter,
    Framing,
    FramingError,
    LengthHeader,
    frame,
    swap_tpdu,
)

ASCII4 = Framing(header=LengthHeader.ASCII4)
TPDU = bytes.fromhex("6000030000")


def test_binary2_header_excludes_itself() -> None:
    assert frame(b"0800abc") == b"\x00\x070800abc"
    assert DEFAULT_FRAMING.header is LengthHeader.BINARY2


def test_ascii4_header() -> None:
    assert frame(b"0800abc", ASCII4) == b"00070800abc"


def test_tpdu_is_counted_and_returned() -> None:
    f = Framing(tpdu=True)
    wire = frame(b"0800", f, tpdu=TPDU)
    assert wire == b"\x00\x09" + TPDU + b"0800"
    assert FrameSplitter(f).feed(wire) == [Frame(b"0800", TPDU)]
    assert swap_tpdu(TPDU) == bytes.fromhex("6000000003")
    with pytest.raises(FramingError):
        frame(b"0800", f)
    with pytest.raises(FramingError):
        frame(b"0800", DEFAULT_FRAMING, tpdu=TPDU)
    with pytest.raises(FramingError):
        swap_tpdu(b"\x60")


def test_frame_refuses_oversized_payload() -> None:
    with pytest.raises(FramingError, match="exceeds max 16"):
        frame(b"x" * 17, Framing(max_frame=16))
    with pytest.raises(ValueError):
        Framing(header=LengthHeader.ASCII4, max_frame=10000)


@pytest.mark.parametrize("framing", [DEFAULT_FRAMING, ASCII4, Framing(tpdu=True)])
def test_splitter_handles_any_chunking(framing: Framing) -> None:
    rng = random.Random(8583)
    payloads = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) for _ in range(50)]
    tpdu = TPDU if framing.tpdu else None
    stream = b"".join(frame(p, framing, tpdu=tpdu) for p in payloads)
    for _ in range(20):
        splitter = FrameSplitter(framing)
        got: list[Frame] = []
        pos = 0
        while pos < len(stream):
            step = rng.choice([1, 2, 3, 7, 64, 1000])
            got.extend(splitter.feed(stream[pos : pos + step]))
            pos += step
        assert [f.payload for f in got] == payloads
        assert all(f.tpdu == tpdu for f in got)
        assert splitter.pending == 0


def test_splitter_keeps_partial_frames() -> None:
    s = FrameSplitter()
    assert s.feed(b"\x00") == []
    assert s.feed(b"\x04ab") == []
    assert s.pending == 4
    assert s.feed(b"cd\x00\x01e\x00") == [Frame(b"abcd"), Frame(b"e")]
    assert s.pending == 1


def test_splitter_skips_zero_length_keepalives() -> None:
    assert FrameSplitter().feed(b"\x00\x00\x00\x02hi\x00\x00") == [Frame(b"hi")]


def test_splitter_max_frame_error_is_sticky() -> None:
    s = FrameSplitter(Framing(max_frame=100))
    with pytest.raises(FramingError, match="frame of 101 bytes exceeds max 100"):
        s.feed(b"\x00\x65")
    with pytest.raises(FramingError):
        s.feed(b"\x00\x01x")
    assert s.pending == 0


def test_splitter_rejects_bad_ascii_header_and_short_tpdu_frame() -> None:
    with pytest.raises(FramingError, match="not 4 ASCII digits"):
        FrameSplitter(ASCII4).feed(b"00a1x")
    with pytest.raises(FramingError, match="shorter than its TPDU"):
        FrameSplitter(Framing(tpdu=True)).feed(b"\x00\x03abc")


def test_splitter_and_codec_in_an_asyncio_protocol_over_tcp() -> None:
    """A real TCP connection: the client writes 40 framed 0800s in odd-sized pieces, the server
    Protocol cuts them with FrameSplitter in data_received, decodes, answers 0810."""
    import asyncio

    from switch.iso8583.codec import Codec
    from switch.iso8583.message import Message

    codec = Codec("ascii87")

    class EchoServer(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport
            self.splitter = FrameSplitter()

        def data_received(self, data: bytes) -> None:
            for f in self.splitter.feed(data):
                req = codec.decode(f.payload)
                resp = Message(req.response_mti(), {11: req.text(11), 39: "00", 70: "301"})
                self.transport.write(frame(codec.encode(resp)))

    async def run() -> list[Message]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(EchoServer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        stream = b"".join(
            frame(codec.encode(Message("0800", {11: f"{i:06d}", 70: "301"}))) for i in range(40)
        )
        for start in range(0, len(stream), 37):
            writer.write(stream[start : start + 37])
            await writer.drain()
        splitter = FrameSplitter()
        answers: list[Message] = []
        while len(answers) < 40:
            chunk = await reader.read(4096)
            assert chunk, "server closed early"
            answers.extend(codec.decode(f.payload) for f in splitter.feed(chunk))
        writer.close()
        server.close()
        await server.wait_closed()
        return answers

    answers = asyncio.run(asyncio.wait_for(run(), timeout=20))
    assert [a.mti for a in answers] == ["0810"] * 40
    assert [a.text(11) for a in answers] == [f"{i:06d}" for i in range(40)]
