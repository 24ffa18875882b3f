"""``TcpHsmClient``: the ``HsmClient`` over the payShield host protocol (TCP).

Works against ``switch hsm serve`` and is written to work against a real payShield (variant
LMK, the command layouts documented in ``switch.hsm.commands``). Design:

* a pool of ``pool_size`` connections, used round robin, each opened on first use and
  re-opened on the next request after it dropped (server restart, network error);
* requests are pipelined: every request carries a fresh numeric header (``header_length``
  digits) and the answer is matched by the echoed header, so many coroutines share one
  connection; the frames queued in one event-loop turn go out in one ``write``;
* each request has a deadline (``timeout``); a request that misses it fails with
  ``HsmUnavailableError`` and its connection is closed (a late answer could otherwise be
  matched to a later request reusing the header). Requests in flight on a connection that
  drops fail the same way: their outcome is unknown and they are never resent blindly.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import cast

from switch.digits import is_ascii_digits
from switch.hsm.client import GeneratedKey, HsmError, HsmUnavailableError, KeyType
from switch.hsm.commands import Reader, response_code
from switch.hsm.errors import INVALID_INPUT

_MAX_FRAME = 32 * 1024


def _account(pan: str) -> str:
    """payShield account number: the 12 rightmost PAN digits excluding the check digit."""
    if not is_ascii_digits(pan):
        raise HsmError(INVALID_INPUT, "PAN: digits only")
    return pan[:-1][-12:].rjust(12, "0")


def _key_len_flag(key: str) -> str:
    return {16: "0", 17: "0", 33: "1", 49: "2"}.get(len(key), "1")


class _Connection(asyncio.Protocol):
    """One pipelined host-protocol connection."""

    def __init__(self, header_length: int, timeout: float) -> None:
        self.header_length = header_length
        self.modulus = 10**header_length
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.alive = False
        self.pending: dict[bytes, asyncio.Future[bytes]] = {}
        self.deadlines: collections.deque[tuple[float, bytes, asyncio.Future[bytes]]] = (
            collections.deque()
        )
        self.out: list[bytes] = []
        self.flush_scheduled = False
        self.sweep_handle: asyncio.TimerHandle | None = None
        self.counter = 0
        self.buffer = bytearray()
        self.loop = asyncio.get_running_loop()

    # ---- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses but have its interface
        self.transport = cast(asyncio.Transport, transport)
        self.alive = True

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail_all(f"HSM connection lost ({exc or 'closed by the HSM'})")

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        pos = 0
        size = len(buf)
        hlen = self.header_length
        pending = self.pending
        while size - pos >= 2:
            length = (buf[pos] << 8) | buf[pos + 1]
            end = pos + 2 + length
            if length > _MAX_FRAME or length < hlen + 4:
                self._abort("garbage frame from the HSM")
                return
            if end > size:
                break
            fut = pending.pop(bytes(buf[pos + 2 : pos + 2 + hlen]), None)
            if fut is not None and not fut.done():
                fut.set_result(bytes(buf[pos + 2 + hlen : end]))
            pos = end
        if pos:
            del buf[:pos]

    # ---- requests ------------------------------------------------------------------------

    def send(self, payload: bytes) -> asyncio.Future[bytes]:
        if not self.alive:
            raise HsmUnavailableError("HSM connection is closed")
        if len(payload) + self.header_length > _MAX_FRAME:
            raise HsmError(INVALID_INPUT, f"command is longer than {_MAX_FRAME} bytes")
        pending = self.pending
        if len(pending) >= self.modulus:
            raise HsmUnavailableError("too many HSM requests in flight on one connection")
        counter = self.counter
        while True:
            counter = (counter + 1) % self.modulus
            header = b"%0*d" % (self.header_length, counter)
            if header not in pending:
                break
        self.counter = counter
        fut: asyncio.Future[bytes] = self.loop.create_future()
        pending[header] = fut
        self.deadlines.append((time.monotonic() + self.timeout, header, fut))
        if self.sweep_handle is None:
            self.sweep_handle = self.loop.call_later(self.timeout, self._sweep)
        self.out.append((len(payload) + self.header_length).to_bytes(2, "big") + header + payload)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self.flush_scheduled = False
        if self.out and self.transport is not None and self.alive:
            data = b"".join(self.out)
            self.out.clear()
            self.transport.write(data)

    def _sweep(self) -> None:
        self.sweep_handle = None
        now = time.monotonic()
        deadlines = self.deadlines
        while deadlines and (deadlines[0][2].done() or deadlines[0][0] <= now):
            _deadline, _header, fut = deadlines[0]
            if not fut.done():
                self._abort(f"HSM did not answer within {self.timeout}s")
                return
            deadlines.popleft()
        if deadlines:
            self.sweep_handle = self.loop.call_at(
                self.loop.time() + max(deadlines[0][0] - now, 0.001), self._sweep
            )

    def _abort(self, why: str) -> None:
        self._fail_all(why)
        if self.transport is not None:
            self.transport.abort()

    def _fail_all(self, why: str) -> None:
        self.alive = False
        self.out.clear()
        if self.sweep_handle is not None:
            self.sweep_handle.cancel()
            self.sweep_handle = None
        pending, self.pending = self.pending, {}
        self.deadlines.clear()
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(HsmUnavailableError(why))

    def close(self) -> None:
        self._fail_all("HSM client closed")
        if self.transport is not None:
            self.transport.close()


class TcpHsmClient:
    """``HsmClient`` over TCP with a pipelined connection pool."""

    def __init__(
        self,
        host: str,
        port: int,
        header_length: int = 4,
        pool_size: int = 4,
        timeout: float = 5.0,
    ) -> None:
        if not 1 <= header_length <= 8:
            raise ValueError("header_length: 1 to 8 (the header carries the request number)")
        if pool_size < 1:
            raise ValueError("pool_size: at least 1")
        self.host = host
        self.port = port
        self.header_length = header_length
        self.timeout = timeout
        self._conns: list[_Connection | None] = [None] * pool_size
        self._locks = [asyncio.Lock() for _ in range(pool_size)]
        self._next = 0
        self._closed = False

    # ---- transport -----------------------------------------------------------------------

    async def _connection(self) -> _Connection:
        i = self._next
        self._next = (i + 1) % len(self._conns)
        conn = self._conns[i]
        if conn is not None and conn.alive:
            return conn
        if self._closed:
            raise HsmUnavailableError("HSM client is closed")
        async with self._locks[i]:
            conn = self._conns[i]
            if conn is not None and conn.alive:
                return conn
            loop = asyncio.get_running_loop()
            try:
                _transport, fresh = await asyncio.wait_for(
                    loop.create_connection(
                        lambda: _Connection(self.header_length, self.timeout), self.host, self.port
                    ),
                    self.timeout,
                )
            except (OSError, TimeoutError) as exc:
                raise HsmUnavailableError(
                    f"cannot connect to the HSM at {self.host}:{self.port}: {exc}"
                ) from None
            self._conns[i] = fresh
            return fresh

    async def call(self, command: bytes) -> tuple[str, Reader]:
        """Send ``command code | fields``; return the error code and a reader on the fields."""
        conn = await self._connection()
        answer = await conn.send(command)
        if answer[:2] != response_code(command[:2]):
            raise HsmError(INVALID_INPUT, f"unexpected HSM response code {answer[:2]!r}")
        code = answer[2:4].decode("ascii", "replace")
        return code, Reader(answer[4:])

    async def _ok(self, command: bytes) -> Reader:
        code, reader = await self.call(command)
        if code != "00":
            raise HsmError(code, f"{command[:2].decode()} failed")
        return reader

    async def _verify(self, command: bytes) -> bool:
        code, _reader = await self.call(command)
        if code == "00":
            return True
        if code == "01":
            return False
        raise HsmError(code, f"{command[:2].decode()} failed")

    async def close(self) -> None:
        self._closed = True
        for conn in self._conns:
            if conn is not None:
                conn.close()
        self._conns = [None] * len(self._conns)

    # ---- key management ------------------------------------------------------------------

    async def diagnostics(self) -> str:
        return (await self._ok(b"NC")).text(16, "LMK check value")

    async def generate_key(
        self,
        key_type: KeyType,
        zmk: str | None = None,
        triple: bool = False,
        key_scheme: str | None = None,
    ) -> GeneratedKey:
        """A0. ``key_scheme="S"``: a key block (AES-128 for a ZPK/TPK)."""
        mode = "0" if zmk is None else "1"
        cmd = f"A0{mode}{key_type.value}{key_scheme or ('T' if triple else 'U')}"
        if zmk is not None:
            cmd += f";0{zmk}{'Y' if triple else 'X'}"
        r = await self._ok(cmd.encode("ascii"))
        under_lmk = r.key("key under LMK")
        under_zmk = r.key("key under ZMK") if zmk is not None else None
        return GeneratedKey(under_lmk, r.text(6, "key check value"), under_zmk)

    async def key_check_value(self, key_type: KeyType, key: str) -> str:
        cmd = f"BUFF{_key_len_flag(key)}{key};{key_type.value}"
        return (await self._ok(cmd.encode("ascii"))).text(6, "key check value")

    async def import_key(self, key_type: KeyType, zmk: str, key_under_zmk: str) -> GeneratedKey:
        scheme = "T" if key_under_zmk[:1] in ("T", "Y") else "U"
        r = await self._ok(f"A6{key_type.value}{zmk}{key_under_zmk}{scheme}".encode("ascii"))
        return GeneratedKey(r.key("key under LMK"), r.text(6, "key check value"))

    async def export_key(self, key_type: KeyType, zmk: str, key: str) -> GeneratedKey:
        scheme = "Y" if key[:1] == "T" else "X"
        r = await self._ok(f"A8{key_type.value}{zmk}{key}{scheme}".encode("ascii"))
        under_zmk = r.key("key under ZMK")
        return GeneratedKey(key, r.text(6, "key check value"), under_zmk)

    async def form_key_from_clear_components(
        self, key_type: KeyType, components: list[str], key_scheme: str | None = None
    ) -> GeneratedKey:
        """FK (authorised state). ``key_scheme="S"`` forms an AES-128 key in a key block."""
        if not components:
            raise HsmError(INVALID_INPUT, "components: at least one")
        scheme = key_scheme or {16: "Z", 32: "U", 48: "T"}.get(len(components[0]))
        if scheme is None:
            raise HsmError(INVALID_INPUT, "components: 16, 32 or 48 hex")
        cmd = f"FK{key_type.value}{scheme}{len(components)}{''.join(components)}"
        r = await self._ok(cmd.encode("ascii"))
        return GeneratedKey(r.key("key under LMK"), r.text(6, "key check value"))

    # ---- PINs ----------------------------------------------------------------------------

    @staticmethod
    def _account_field(pan: str, *formats: str) -> str:
        if "48" in formats:
            return f"{len(pan):02d}{pan}"
        return _account(pan)

    async def _translate(
        self, code: str, src: str, dst: str, block: bytes, pan: str, sf: str, df: str
    ) -> bytes:
        cmd = f"{code}{src}{dst}12{block.hex().upper()}{sf}{df}{self._account_field(pan, sf, df)}"
        r = await self._ok(cmd.encode("ascii"))
        r.digits(2, "PIN length")
        return r.hex(32 if df == "48" else 16, "destination PIN block")

    async def translate_pin_tpk_to_zpk(
        self,
        tpk: str,
        zpk: str,
        pin_block: bytes,
        pan: str,
        src_format: str = "01",
        dst_format: str = "01",
    ) -> bytes:
        return await self._translate("CA", tpk, zpk, pin_block, pan, src_format, dst_format)

    async def translate_pin_zpk_to_zpk(
        self,
        src_zpk: str,
        dst_zpk: str,
        pin_block: bytes,
        pan: str,
        src_format: str = "01",
        dst_format: str = "01",
    ) -> bytes:
        return await self._translate("CC", src_zpk, dst_zpk, pin_block, pan, src_format, dst_format)

    async def verify_pin_pvv(
        self,
        pin_key: str,
        pvk: str,
        pin_block: bytes,
        pan: str,
        pvki: int,
        pvv: str,
        pin_format: str = "01",
        interchange: bool = False,
    ) -> bool:
        code = "EC" if interchange else "DC"
        cmd = f"{code}{pin_key}{pvk}{pin_block.hex().upper()}{pin_format}{_account(pan)}{pvki}{pvv}"
        return await self._verify(cmd.encode("ascii"))

    async def verify_pin_ibm(
        self,
        pin_key: str,
        pvk: str,
        pin_block: bytes,
        pan: str,
        offset: str,
        decimalisation_table: str,
        validation_data: str,
        check_length: int = 4,
        pin_format: str = "01",
        interchange: bool = False,
    ) -> bool:
        account = _account(pan)
        data = validation_data.upper()
        if len(data) == 16 and data.endswith(account[-5:]):
            data = data[:11] + "N"  # payShield's 12A field: N = last 5 account digits
        if len(data) != 12:
            raise HsmError(INVALID_INPUT, "PIN validation data: 12 characters over TCP")
        code = "EA" if interchange else "DA"
        cmd = (
            f"{code}{pin_key}{pvk}12{pin_block.hex().upper()}{pin_format}{check_length:02d}"
            f"{account}{decimalisation_table}{data}{offset.ljust(12, 'F')}"
        )
        return await self._verify(cmd.encode("ascii"))

    async def encrypt_pin(self, pin: str, pan: str) -> str:
        r = await self._ok(f"BA{pin}F{_account(pan)}".encode("ascii"))
        return r.text(16, "PIN under LMK")

    async def decrypt_pin(self, lmk_pin: str, pan: str) -> str:
        """NG (authorised state only; not part of ``HsmClient``)."""
        r = await self._ok(f"NG{_account(pan)}{lmk_pin}".encode("ascii"))
        return r.text(13, "PIN").rstrip("F")

    async def generate_pvv(self, pvk: str, lmk_pin: str, pan: str, pvki: int) -> str:
        r = await self._ok(f"DG{pvk}{lmk_pin}{_account(pan)}{pvki}".encode("ascii"))
        return r.digits(4, "PVV")

    # ---- card and EMV --------------------------------------------------------------------

    async def generate_cvv(self, cvk: str, pan: str, expiry: str, service_code: str) -> str:
        r = await self._ok(f"CW{cvk}{pan};{expiry}{service_code}".encode("ascii"))
        return r.digits(3, "CVV")

    async def verify_cvv(
        self, cvk: str, pan: str, expiry: str, service_code: str, cvv: str
    ) -> bool:
        return await self._verify(f"CY{cvk}{cvv}{pan};{expiry}{service_code}".encode("ascii"))

    async def verify_arqc(
        self,
        mk_ac: str,
        pan: str,
        pan_sequence: str,
        atc: bytes,
        unpredictable_number: bytes,
        transaction_data: bytes,
        arqc: bytes,
        arc: bytes,
        method: int = 1,
        csu: bytes | None = None,
    ) -> bytes | None:
        digits = (pan + pan_sequence.zfill(2))[-16:].rjust(16, "0")
        if not is_ascii_digits(digits) or len(transaction_data) > 255:
            raise HsmError(INVALID_INPUT, "PAN/PSN digits, transaction data up to 255 bytes")
        cmd = (
            f"KQ1{method}{mk_ac}".encode("ascii")
            + bytes.fromhex(digits)
            + atc
            + unpredictable_number
            + f"{len(transaction_data):02X}".encode("ascii")
            + transaction_data
            + b";"
            + arqc
            + (arc if method == 1 else (csu or b""))
        )
        code, r = await self.call(cmd)
        if code == "01":
            return None
        if code != "00":
            raise HsmError(code, "KQ failed")
        return r.rest()

    async def generate_mac(self, key_type: KeyType, key: str, data: bytes) -> bytes:
        cmd = f"M600131{key_type.value}{key}{len(data):04X}".encode("ascii") + data
        return (await self._ok(cmd)).hex(16, "MAC")

    async def verify_mac(self, key_type: KeyType, key: str, data: bytes, mac: bytes) -> bool:
        size = "1" if len(mac) == 8 else "0"
        cmd = (
            f"M800{size}31{key_type.value}{key}{len(data):04X}".encode("ascii")
            + data
            + mac.hex().upper().encode("ascii")
        )
        return await self._verify(cmd)
