"""SMS through an SMS centre over SMPP 3.4 (smpplib), as a transceiver.

What it does for the worker:

* binds once (``bind_transceiver``) and keeps the session: a keep-alive thread sends
  ``enquire_link`` when the link has been idle for ``enquire_link_interval``; before a send on
  a link idle for more than ``probe_after`` seconds it probes with ``enquire_link`` first, so
  a session the SMS centre dropped is re-established *before* a message is written to it (a
  probe is harmless to repeat, a submit is not);
* encodes GSM-7 (``data_coding`` 0, unpacked septets) when the text fits the GSM alphabet and
  UCS-2 (``data_coding`` 8, UTF-16BE) otherwise -- always for Arabic -- and splits a long text
  into concatenated parts with an 8-bit-reference UDH (``esm_class`` 0x40);
* raises ``TransportError`` when the SMS centre refuses a part (error status,
  ``generic_nack``; the session stays) and its subclass ``LinkDown`` when it cannot be reached
  or the session breaks (connect/bind failure, timeout, lost connection, unparsable answer;
  the session is dropped and rebuilt on the next send).

Idempotency: the worker's ``reference`` ("alert-<outbox id>") is sent as
``user_message_reference`` (the id modulo 65536) and fixes the UDH concatenation reference,
so a resend after a crash between acceptance and mark-sent carries the same keys and an SMS
centre (or the handset, for the parts) can discard the repeat. If part *k* of a long message
is refused, the retry sends every part again with the same concatenation reference.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
import zlib
from collections import deque
from typing import Any

import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.smpp

from switch.notify.errors import LinkDown
from switch.notify.sms_encoding import (
    GSM7_PART,
    GSM7_SINGLE,
    UCS2_PART,
    UCS2_SINGLE,
    encoding_for,
    gsm7_encode,
    split_gsm7,
    split_ucs2,
)
from switch.notify.transport import TransportError

log = logging.getLogger(__name__)

DATA_CODING_GSM7 = 0x00
DATA_CODING_UCS2 = 0x08
ESM_CLASS_UDHI = 0x40
TON_INTERNATIONAL = 1
TON_ALPHANUMERIC = 5
NPI_ISDN = 1
_MSISDN = re.compile(r"^\+?[0-9]{6,15}$")
# smpplib hex-dumps every PDU at DEBUG, bind_transceiver (with the password) included: keep
# its client logger at INFO whatever the root level is.
_CLIENT_LOGGER = "switch.notify.smpp.wire"
logging.getLogger(_CLIENT_LOGGER).setLevel(logging.INFO)


def encode_parts(text: str, reference: str) -> tuple[int, int, list[bytes]]:
    """(data_coding, esm_class, short_message of each part) for ``text``."""
    if encoding_for(text) == "gsm7":
        coding, single = DATA_CODING_GSM7, gsm7_encode(text)
        if len(single) <= GSM7_SINGLE:
            return coding, 0, [single]
        payloads = split_gsm7(text, GSM7_PART)
    else:
        coding, single = DATA_CODING_UCS2, text.encode("utf-16-be")
        if len(single) <= UCS2_SINGLE * 2:
            return coding, 0, [single]
        payloads = split_ucs2(text, UCS2_PART)
    if len(payloads) > 255:
        raise TransportError(f"text of {len(text)} characters needs more than 255 SMS parts")
    ref = zlib.crc32(reference.encode()) & 0xFF
    total = len(payloads)
    parts = [bytes((0x05, 0x00, 0x03, ref, total, i + 1)) + p for i, p in enumerate(payloads)]
    return coding, ESM_CLASS_UDHI, parts


def user_message_reference(reference: str) -> int:
    """The outbox id modulo 65536 (digits at the end of the reference), else a CRC of it."""
    m = re.search(r"(\d+)$", reference)
    if m:
        return int(m.group(1)) % 65536
    return zlib.crc32(reference.encode()) & 0xFFFF


class SmppTransport:
    """``SmsTransport`` over one SMPP transceiver session (thread-safe, one send at a time)."""

    shows_secrets = True  # the SMS centre delivers to the handset: it gets the real code

    def __init__(
        self,
        host: str,
        port: int,
        *,
        system_id: str,
        password: str,
        system_type: str = "",
        source_addr: str = "EDAHABIA",
        timeout: float = 10.0,
        enquire_link_interval: float = 30.0,
        probe_after: float = 5.0,
        registered_delivery: bool = False,
        keepalive: bool = True,
    ) -> None:
        if len(system_id.encode()) > 15:
            raise ValueError("system_id must be at most 15 characters (SMPP 3.4)")
        if len(password.encode()) > 8:
            raise ValueError("password must be at most 8 characters (SMPP 3.4)")
        if len(system_type.encode()) > 12:
            raise ValueError("system_type must be at most 12 characters (SMPP 3.4)")
        self.host = host
        self.port = port
        self.system_id = system_id
        self._password = password
        self.system_type = system_type
        self.source_addr = source_addr
        self.timeout = timeout
        self.enquire_link_interval = enquire_link_interval
        self.probe_after = probe_after
        self.registered_delivery = registered_delivery
        self.receipts: deque[dict[str, Any]] = deque(maxlen=1000)  # latest delivery receipts
        self.binds = 0
        self._client: smpplib.client.Client | None = None
        self._last_io = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._keepalive: threading.Thread | None = None
        if keepalive:
            self._keepalive = threading.Thread(
                target=self._keepalive_loop, name="smpp-keepalive", daemon=True
            )
            self._keepalive.start()

    # ---- SmsTransport ---------------------------------------------------------------------

    def send(self, msisdn: str, text: str, reference: str) -> str:
        if not _MSISDN.match(msisdn):
            raise TransportError("msisdn must be 6 to 15 digits, optionally with a leading +")
        coding, esm_class, parts = encode_parts(text, reference)
        umr = user_message_reference(reference)
        with self._lock:
            self._ensure_session()
            ids: list[str] = []
            for part in parts:
                pdu = smpplib.smpp.make_pdu(
                    "submit_sm",
                    client=self._client,
                    service_type="",
                    source_addr_ton=TON_ALPHANUMERIC,
                    source_addr_npi=0,
                    source_addr=self.source_addr,
                    dest_addr_ton=TON_INTERNATIONAL,
                    dest_addr_npi=NPI_ISDN,
                    destination_addr=msisdn.lstrip("+"),
                    esm_class=esm_class,
                    data_coding=coding,
                    registered_delivery=1 if self.registered_delivery else 0,
                    short_message=part,
                    user_message_reference=umr,
                )
                resp = self._request(pdu, "submit_sm_resp")
                raw_id = resp.message_id
                ids.append(raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id or ""))
            return ",".join(ids)

    def close(self) -> None:
        self._stop.set()
        if self._keepalive is not None:
            self._keepalive.join(timeout=self.timeout + 1)
        with self._lock:
            client = self._client
            if client is not None:
                try:
                    self._request(smpplib.smpp.make_pdu("unbind", client=client), "unbind_resp")
                except TransportError:
                    pass
                self._drop()

    # ---- session ----------------------------------------------------------------------------

    def enquire_link(self) -> None:
        """Probe the session (raises ``TransportError``/``LinkDown`` and drops it when dead)."""
        with self._lock:
            if self._client is None:
                raise LinkDown("not connected")
            self._request(smpplib.smpp.make_pdu("enquire_link", client=self._client),
                          "enquire_link_resp")  # fmt: skip

    def _ensure_session(self) -> None:
        if self._client is not None and time.monotonic() - self._last_io > self.probe_after:
            try:
                self._request(
                    smpplib.smpp.make_pdu("enquire_link", client=self._client),
                    "enquire_link_resp",
                )
            except TransportError:
                log.info("SMPP session to %s:%s went away; rebinding", self.host, self.port)
        if self._client is not None:
            return
        client = smpplib.client.Client(
            self.host,
            self.port,
            timeout=self.timeout,
            logger_name=_CLIENT_LOGGER,
            allow_unknown_opt_params=True,
        )
        try:
            client.connect()
            client.bind_transceiver(
                system_id=self.system_id,
                password=self._password,
                system_type=self.system_type,
            )
        except Exception as exc:  # refused, unreachable, or an unparsable answer
            if client._socket is not None:
                client._socket.close()
                client._socket = None
            raise LinkDown(f"SMPP bind to {self.host}:{self.port} failed: {exc!r}") from exc
        self._client = client
        self._last_io = time.monotonic()
        self.binds += 1

    def _request(self, pdu: Any, expect: str) -> Any:
        """Send ``pdu``, answer whatever the SMS centre sends meanwhile, return the response."""
        client = self._client
        assert client is not None
        try:
            client.send_pdu(pdu)
            while True:
                resp = client.read_pdu()
                self._last_io = time.monotonic()
                command = resp.command
                if command == expect and resp.sequence == pdu.sequence:
                    if resp.is_error():
                        raise TransportError(
                            f"{command} status 0x{int(resp.status):08X} "
                            f"{smpplib.consts.DESCRIPTIONS.get(resp.status, '')}".rstrip()
                        )
                    return resp
                if command == "generic_nack" and resp.sequence in (pdu.sequence, 0):
                    raise TransportError(f"generic_nack status 0x{int(resp.status):08X}")
                self._answer(client, resp)
        except TransportError:
            if expect != "submit_sm_resp":  # a refused submit leaves a healthy session
                self._drop()
            raise
        except Exception as exc:  # lost link, timeout, or a PDU smpplib cannot parse
            self._drop()
            raise LinkDown(f"SMPP {pdu.command} failed: {exc!r}") from exc

    def _answer(self, client: smpplib.client.Client, pdu: Any) -> None:
        command = pdu.command
        if command == "enquire_link":
            resp = smpplib.smpp.make_pdu("enquire_link_resp", client=client)
        elif command == "deliver_sm":  # delivery receipt on the transceiver session
            self.receipts.append(
                {"source_addr": _text(pdu.source_addr), "text": _text(pdu.short_message)}
            )
            resp = smpplib.smpp.make_pdu("deliver_sm_resp", client=client)
        elif command == "unbind":
            resp = smpplib.smpp.make_pdu("unbind_resp", client=client)
            resp.sequence = pdu.sequence
            client.send_pdu(resp)
            raise smpplib.exceptions.ConnectionError("SMS centre unbound")
        else:
            log.debug("ignoring SMPP %s", command)
            return
        resp.sequence = pdu.sequence
        client.send_pdu(resp)

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None and client._socket is not None:
            try:
                client._socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            client._socket.close()
            client._socket = None
            client.state = smpplib.consts.SMPP_CLIENT_STATE_CLOSED

    def _keepalive_loop(self) -> None:
        interval = self.enquire_link_interval
        while not self._stop.wait(min(interval, 1.0)):
            if self._client is None or time.monotonic() - self._last_io < interval:
                continue
            if not self._lock.acquire(timeout=0.1):
                continue  # a send is in progress: the link is not idle
            try:
                if self._client is not None:
                    self._request(
                        smpplib.smpp.make_pdu("enquire_link", client=self._client),
                        "enquire_link_resp",
                    )
            except TransportError as exc:
                log.info("SMPP keep-alive failed: %s", exc)
            finally:
                self._lock.release()


def _text(value: object) -> str:
    """smpplib hands out bytes or str depending on the field: receipts are ASCII."""
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return "" if value is None else str(value)
