"""A small, real SMPP 3.4 server (SMS centre) for tests, written from the specification.

It parses PDUs itself (no smpplib), so the transport under test is checked against an
independent reading of the protocol: bind_transceiver/transmitter, submit_sm (GSM-7 and
UCS-2, UDH concatenation, TLVs), enquire_link, unbind; unknown commands get generic_nack.
Tests steer it: refuse the next submits with an error status, drop the connection on the
next submits without answering, refuse binds, kill every session (an SMS centre restart),
or send its own enquire_link before answering a submit.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

BIND_RECEIVER = 0x00000001
BIND_TRANSMITTER = 0x00000002
SUBMIT_SM = 0x00000004
DELIVER_SM = 0x00000005
UNBIND = 0x00000006
BIND_TRANSCEIVER = 0x00000009
ENQUIRE_LINK = 0x00000015
GENERIC_NACK = 0x80000000
RESP = 0x80000000

ESME_ROK = 0x00
ESME_RINVCMDID = 0x03
ESME_RBINDFAIL = 0x0D
ESME_RINVPASWD = 0x0E
ESME_RTHROTTLED = 0x58
USER_MESSAGE_REFERENCE = 0x0204

# GSM 03.38 default alphabet, 0x00-0x7F (0x1B = escape to the extension table).
GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
GSM_EXTENSION = {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[",
                 0x3D: "~", 0x3E: "]", 0x40: "|", 0x65: "€"}  # fmt: skip


def gsm_decode(data: bytes) -> str:
    out: list[str] = []
    i = 0
    while i < len(data):
        if data[i] == 0x1B and i + 1 < len(data):
            out.append(GSM_EXTENSION.get(data[i + 1], " "))
            i += 2
        else:
            out.append(GSM_BASIC[data[i]])
            i += 1
    return "".join(out)


@dataclass
class Submit:
    """One submit_sm as received."""

    sequence: int
    system_id: str
    source_addr: str
    destination_addr: str
    dest_addr_ton: int
    esm_class: int
    data_coding: int
    short_message: bytes
    tlvs: dict[int, bytes]
    message_id: str = ""
    accepted: bool = False

    @property
    def concat(self) -> tuple[int, int, int] | None:
        """(reference, total, number) from an 8-bit concatenation UDH, if any."""
        if not self.esm_class & 0x40:
            return None
        udh = self.short_message[1 : 1 + self.short_message[0]]
        i = 0
        while i + 2 <= len(udh):
            iei, length = udh[i], udh[i + 1]
            if iei == 0x00 and length == 3:
                ref, total, number = udh[i + 2 : i + 5]
                return ref, total, number
            i += 2 + length
        return None

    @property
    def payload(self) -> bytes:
        if self.esm_class & 0x40:
            return self.short_message[1 + self.short_message[0] :]
        return self.short_message

    @property
    def user_message_reference(self) -> int | None:
        raw = self.tlvs.get(USER_MESSAGE_REFERENCE)
        return None if raw is None else int.from_bytes(raw, "big")


@dataclass
class Message:
    """A complete SMS as the handset would show it (parts reassembled and decoded)."""

    destination: str
    text: str
    data_coding: int
    parts: int
    user_message_reference: int | None
    message_ids: list[str]


@dataclass
class _Conn:
    sock: socket.socket
    system_id: str = ""
    bound: bool = False


@dataclass
class SmppPeer:
    system_id: str = "switch"
    password: str = "secret"
    host: str = "127.0.0.1"
    submits: list[Submit] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    binds: list[tuple[str, str, int]] = field(default_factory=list)
    enquire_links: int = 0
    unbinds: int = 0
    receipts_acknowledged: int = 0
    port: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._reject: list[int] = []
        self._drop = 0
        self._garbage = 0
        self._bind_failures = 0
        self._enquire_first = False
        self._receipt_first = False
        self._conns: list[_Conn] = []
        self._next_id = 1
        self._pending: dict[tuple[str, int], dict[int, Submit]] = {}
        self._listener = socket.create_server((self.host, 0))
        self.port = self._listener.getsockname()[1]
        self._stopping = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    # ---- steering -----------------------------------------------------------------------

    def reject_next(self, n: int, status: int = ESME_RTHROTTLED) -> None:
        with self._lock:
            self._reject.extend([status] * n)

    def drop_next(self, n: int) -> None:
        """Close the connection on the next ``n`` submits without answering them."""
        with self._lock:
            self._drop += n

    def fail_binds(self, n: int) -> None:
        with self._lock:
            self._bind_failures += n

    def heal(self) -> None:
        """Forget every pending refusal, drop and bind failure."""
        with self._lock:
            self._reject.clear()
            self._drop = self._garbage = self._bind_failures = 0

    def garbage_next(self, n: int) -> None:
        """Answer the next ``n`` submits with a PDU of an unknown command id."""
        with self._lock:
            self._garbage += n

    def enquire_before_response(self, on: bool = True) -> None:
        self._enquire_first = on

    def receipt_before_response(self, on: bool = True) -> None:
        """Send a deliver_sm delivery receipt on the session before each submit_sm_resp."""
        self._receipt_first = on

    def kill_connections(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            _close(c.sock)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()

    def stop(self) -> None:
        self._stopping = True
        _close(self._listener)
        self.kill_connections()
        self._thread.join(timeout=5)

    def __enter__(self) -> SmppPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- server -------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stopping:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            conn = _Conn(sock)
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: _Conn) -> None:
        try:
            while True:
                header = _recv_exact(conn.sock, 16)
                if header is None:
                    return
                length, command, _status, seq = struct.unpack(">IIII", header)
                if length < 16 or length > 65536:
                    return
                body = _recv_exact(conn.sock, length - 16) if length > 16 else b""
                if body is None:
                    return
                if not self._handle(conn, command, seq, body):
                    return
        except OSError:
            return
        finally:
            _close(conn.sock)

    def _handle(self, conn: _Conn, command: int, seq: int, body: bytes) -> bool:
        if command in (BIND_TRANSCEIVER, BIND_TRANSMITTER, BIND_RECEIVER):
            system_id, off = _cstr(body, 0)
            password, off = _cstr(body, off)
            _system_type, off = _cstr(body, off)
            version = body[off] if off < len(body) else 0
            with self._lock:
                self.binds.append((system_id, password, version))
                fail = self._bind_failures > 0
                if fail:
                    self._bind_failures -= 1
            if fail:
                status = ESME_RBINDFAIL
            elif (system_id, password) != (self.system_id, self.password):
                status = ESME_RINVPASWD
            else:
                status, conn.bound, conn.system_id = ESME_ROK, True, system_id
            _send(conn.sock, command | RESP, status, seq, b"SMSC\x00")
            return True
        if command == ENQUIRE_LINK:
            with self._lock:
                self.enquire_links += 1
            _send(conn.sock, ENQUIRE_LINK | RESP, ESME_ROK, seq, b"")
            return True
        if command == UNBIND:
            with self._lock:
                self.unbinds += 1
            _send(conn.sock, UNBIND | RESP, ESME_ROK, seq, b"")
            return False
        if command == SUBMIT_SM:
            return self._submit(conn, seq, body)
        if command == DELIVER_SM | RESP:
            with self._lock:
                self.receipts_acknowledged += 1
            return True
        _send(conn.sock, GENERIC_NACK, ESME_RINVCMDID, seq, b"")
        return True

    def _submit(self, conn: _Conn, seq: int, body: bytes) -> bool:
        if not conn.bound:
            _send(conn.sock, SUBMIT_SM | RESP, 0x04, seq, b"\x00")  # ESME_RINVBNDSTS
            return True
        sub = _parse_submit(seq, conn.system_id, body)
        with self._lock:
            self.submits.append(sub)
            if self._drop > 0:
                self._drop -= 1
                return False
            if self._garbage > 0:
                self._garbage -= 1
                _send(conn.sock, 0x00001234, ESME_ROK, seq, b"\xde\xad")
                return True
            status = self._reject.pop(0) if self._reject else ESME_ROK
            if status == ESME_ROK:
                sub.message_id = f"{self._next_id:08X}"
                sub.accepted = True
                self._next_id += 1
                self._assemble(sub)
        if self._enquire_first:
            _send(conn.sock, ENQUIRE_LINK, ESME_ROK, 0x7FFF0000 + seq, b"")
        if self._receipt_first:
            text = f"id:{sub.message_id} stat:DELIVRD".encode()
            receipt = (
                b"\x00" + bytes((1, 1)) + sub.destination_addr.encode() + b"\x00"
                + bytes((5, 0)) + sub.source_addr.encode() + b"\x00"
                + bytes((0x04, 0, 0)) + b"\x00\x00" + bytes((0, 0, 0, 0, len(text))) + text
            )  # fmt: skip
            _send(conn.sock, DELIVER_SM, ESME_ROK, 0x7FFE0000 + seq, receipt)
        _send(conn.sock, SUBMIT_SM | RESP, status, seq, sub.message_id.encode() + b"\x00")
        return True

    def _assemble(self, sub: Submit) -> None:
        concat = sub.concat
        if concat is None:
            self.messages.append(_message(sub.destination_addr, [sub]))
            return
        ref, total, number = concat
        key = (sub.destination_addr, ref)
        parts = self._pending.setdefault(key, {})
        parts[number] = sub
        if len(parts) == total and all(i in parts for i in range(1, total + 1)):
            del self._pending[key]
            self.messages.append(
                _message(sub.destination_addr, [parts[i] for i in range(1, total + 1)])
            )


def _message(destination: str, parts: list[Submit]) -> Message:
    payload = b"".join(p.payload for p in parts)
    coding = parts[0].data_coding
    text = payload.decode("utf-16-be") if coding == 0x08 else gsm_decode(payload)
    return Message(
        destination=destination,
        text=text,
        data_coding=coding,
        parts=len(parts),
        user_message_reference=parts[0].user_message_reference,
        message_ids=[p.message_id for p in parts],
    )


def _parse_submit(seq: int, system_id: str, body: bytes) -> Submit:
    _service_type, off = _cstr(body, 0)
    _src_ton, _src_npi = body[off], body[off + 1]
    source, off = _cstr(body, off + 2)
    dest_ton, _dest_npi = body[off], body[off + 1]
    dest, off = _cstr(body, off + 2)
    esm_class, _protocol_id, _priority = body[off], body[off + 1], body[off + 2]
    _schedule, off = _cstr(body, off + 3)
    _validity, off = _cstr(body, off)
    _registered, _replace, data_coding, _default_id, sm_length = body[off : off + 5]
    off += 5
    short_message = body[off : off + sm_length]
    off += sm_length
    tlvs: dict[int, bytes] = {}
    while off + 4 <= len(body):
        tag, length = struct.unpack(">HH", body[off : off + 4])
        tlvs[tag] = body[off + 4 : off + 4 + length]
        off += 4 + length
    return Submit(seq, system_id, source, dest, dest_ton, esm_class, data_coding,
                  short_message, tlvs)  # fmt: skip


def _cstr(data: bytes, off: int) -> tuple[str, int]:
    end = data.index(b"\x00", off)
    return data[off:end].decode("ascii", "replace"), end + 1


def _send(sock: socket.socket, command: int, status: int, seq: int, body: bytes) -> None:
    sock.sendall(struct.pack(">IIII", 16 + len(body), command, status, seq) + body)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
