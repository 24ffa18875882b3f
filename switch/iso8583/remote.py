"""``RemoteIssuerClient``: how the core reaches a card issuer on another host (ISO 8583).

The core routes a card by BIN; when the route names a remote issuer it calls that issuer's
``authorize`` (``switch.core.remote.RemoteIssuer``) with the request as the acquirer sent it --
PIN block still under the acquirer's terminal key -- and posts nothing itself. This module:

* translates the PIN block to the issuer's zone key in the HSM (CA from the terminal's TPK,
  or CC from an acquirer ZPK for requests that came in over another interchange link);
* maps the request to an 0100/0200 (our own outbound mapping: ``switch.iso8583.mapping``
  maps the other direction, and this module follows its field conventions -- 48 for bills,
  103 for transfers, 54 balances, 90 original data) and sends it on the persistent
  :class:`~switch.iso8583.client.IsoClient`;
* applies the failure rules of DESIGN.md section 4: connection down at send time -> 91 and
  nothing to reverse; no answer within ``timeout`` -> a reversal (0420) is made durable in the
  :class:`~switch.iso8583.saf.SafQueue` *then* 91 is answered; the request itself is never
  resent. A forwarder task delivers queued reversals (repeats as 0421) until the issuer
  acknowledges them with an 0430, also after a restart;
* forwards acquirer reversals (and voids) of remote transactions through the same queue, so
  they are acknowledged to the acquirer at once and delivered however long the link is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from switch.core.domain import Terminal
from switch.core.model import DZD, AuthRequest, AuthResult, ResponseCode, TxnType
from switch.core.pipeline import BAD_PIN_BLOCK_CODES
from switch.hsm.client import HsmClient, HsmError
from switch.iso8583.client import ConnectionDownError, IsoClient, transmission_now
from switch.iso8583.codec import Iso8583Error
from switch.iso8583.framing import DEFAULT_FRAMING, Framing, LengthHeader
from switch.iso8583.message import Message
from switch.iso8583.mux import MuxKeyInUseError
from switch.iso8583.saf import SafQueue

__all__ = [
    "RemoteIssuerClient",
    "RemoteIssuerConfig",
    "RemoteIssuers",
    "answer_to_result",
    "attach_remote_issuer",
    "load_remote_issuers",
    "open_saf",
    "request_to_message",
    "reversal_for",
    "start_remote_issuers",
]

log = logging.getLogger(__name__)

RC = ResponseCode


#: Transaction type -> processing code (field 3, first two digits) of the outbound 0100/0200.
_PROCESSING: dict[TxnType, str] = {
    TxnType.CASH_WITHDRAWAL: "01",
    TxnType.BALANCE_INQUIRY: "31",
    TxnType.PURCHASE: "00",
    TxnType.PREAUTH: "00",
    TxnType.BILL_PAYMENT: "50",
    TxnType.TRANSFER: "40",
}
#: Acquirer requests forwarded as reversals through the store-and-forward queue.
_REVERSING = frozenset({TxnType.REVERSAL, TxnType.VOID})
#: Fields a reversal repeats from the request it reverses.
_REVERSAL_FIELDS = (2, 3, 4, 32, 37, 41, 42, 49)
_CODES = {c.value: c for c in ResponseCode}


@dataclass(frozen=True, slots=True)
class RemoteIssuerConfig:
    """One remote issuer: where it listens, how it frames, its zone PIN key, its patience."""

    name: str  # the BIN route's destination, e.g. "remote-bank"
    host: str
    port: int
    zpk: str  # the issuer's ZPK, encrypted under our LMK
    spec: str = "ascii87"
    framing: Framing = DEFAULT_FRAMING
    timeout: float = 5.0  # seconds to wait for an answer before 91 + reversal
    echo_interval: float = 30.0
    saf_retry: float = 5.0  # seconds between repeats of an unacknowledged reversal
    reconnect_max: float = 10.0  # longest back-off between reconnection attempts
    pin_block_format: str = "01"  # format of the PIN block sent to the issuer (ISO 0)
    acquirer_zpks: Mapping[str, str] = field(default_factory=dict)  # acquirer id -> ZPK

    def __post_init__(self) -> None:
        if self.framing.tpdu:
            raise ValueError(f"remote_issuers.{self.name}.tpdu: not supported on an issuer link")
        if self.timeout <= 0:
            raise ValueError(f"remote_issuers.{self.name}.timeout: must be positive")

    @classmethod
    def from_mapping(cls, name: str, d: Mapping[str, Any]) -> RemoteIssuerConfig:
        """From a config table (``[remote_issuers.<name>]``); ValueError names a bad key."""
        for key in ("host", "port", "zpk"):
            if key not in d:
                raise ValueError(f"remote_issuers.{name}.{key}: required")
        if d.get("tpdu"):
            raise ValueError(f"remote_issuers.{name}.tpdu: not supported on an issuer link")
        try:
            framing = Framing(LengthHeader(d.get("length_header", "binary2")))
        except ValueError as exc:
            raise ValueError(f"remote_issuers.{name}.length_header: {exc}") from None

        def number(key: str, default: float | None, kind: type[int] | type[float]) -> Any:
            value = d.get(key, default)
            try:
                return kind(value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"remote_issuers.{name}.{key}: {value!r} is not a {kind.__name__}"
                ) from None

        return cls(
            name,
            str(d["host"]),
            number("port", None, int),
            str(d["zpk"]),
            spec=str(d.get("spec", "ascii87")),
            framing=framing,
            timeout=number("timeout", 5.0, float),
            echo_interval=number("echo_interval", 30.0, float),
            saf_retry=number("saf_retry", 5.0, float),
            reconnect_max=number("reconnect_max", 10.0, float),
            acquirer_zpks=dict(d.get("acquirer_zpks", {})),
        )


# -- mapping ------------------------------------------------------------------------------
def request_to_message(req: AuthRequest, pin_block: bytes | None) -> Message:
    """The outbound 0100/0200 for ``req`` (``pin_block`` already under the issuer ZPK).

    Raises ValueError naming the field when ``req`` cannot be expressed.
    """
    proc = _PROCESSING.get(req.txn_type)
    if proc is None:
        raise ValueError(f"txn_type: {req.txn_type} is not forwarded to a remote issuer")
    if len(req.terminal_id) > 8:
        raise ValueError("terminal_id: longer than 8 characters (field 41)")
    f: dict[int, str | bytes] = {
        2: req.pan,
        3: proc + "0000",
        4: f"{req.amount:012d}",
        7: req.transmission,
        11: req.stan,
        32: req.acquirer_id,
        41: req.terminal_id.ljust(8),
        49: f"{req.currency or DZD:03d}",
    }
    if req.local_time is not None:
        f[12] = req.local_time.strftime("%H%M%S")
        f[13] = req.local_time.strftime("%m%d")
    optional: dict[int, str | bytes | None] = {
        14: req.expiry,
        18: req.mcc,
        22: req.entry_mode,
        35: req.track2,
        37: req.rrn,
        42: req.merchant_id.ljust(15) if req.merchant_id else None,
        43: req.card_acceptor[:40].ljust(40) if req.card_acceptor else None,
        52: pin_block,
        55: req.emv_data,
        103: req.destination_account,
    }
    f.update({n: v for n, v in optional.items() if v is not None})
    if req.txn_type is TxnType.BILL_PAYMENT:
        f[48] = f"{req.biller_id or ''}/{req.bill_reference or ''}"
    return Message("0100" if req.txn_type is TxnType.PREAUTH else "0200", f)


def _original_data(mti: str, stan: str, transmission: str, acquirer: str) -> str:
    """Field 90: original MTI, STAN, transmission date-time, acquirer id (11), forwarder (11)."""
    return f"{mti}{stan}{transmission}{int(acquirer or '0'):011d}{0:011d}"


def reversal_for(original: Message, stan: str, amount: int | None = None) -> Message:
    """The 0420 reversing ``original`` (a request whose outcome is unknown)."""
    f: dict[int, str | bytes] = {n: original.fields[n] for n in _REVERSAL_FIELDS if n in original}
    f[7] = transmission_now()
    f[11] = stan
    f[90] = _original_data(
        original.mti, original.text(11), original.text(7), str(original.get(32) or "0")
    )
    if amount is not None:
        f[95] = f"{amount:012d}".ljust(42, "0")
    return Message("0420", f)


def acquirer_reversal(req: AuthRequest, stan: str) -> Message:
    """The 0420 forwarding an acquirer's reversal / void of a remote transaction."""
    o = req.original
    if o is None or not (o.stan and o.transmission):
        raise ValueError("original: the remote issuer needs the original STAN and field 7")
    f: dict[int, str | bytes] = {
        2: req.pan,
        3: "000000",
        4: f"{req.amount:012d}",
        7: transmission_now(),
        11: stan,
        32: req.acquirer_id,
        41: req.terminal_id.ljust(8),
        49: f"{req.currency or DZD:03d}",
        90: _original_data(
            o.mti or "0200", o.stan, o.transmission, o.acquirer_id or req.acquirer_id
        ),
    }
    if req.rrn:
        f[37] = req.rrn
    if req.replacement_amount is not None:
        f[95] = f"{req.replacement_amount:012d}".ljust(42, "0")
    return Message("0420", f)


def _balances(value: str) -> tuple[int | None, int | None, int | None]:
    """Ledger, available balance and currency from field 54 (20-character amounts)."""
    ledger = available = currency = None
    for i in range(0, len(value) - 19, 20):
        part = value[i : i + 20]
        if not part[8:].isdigit() or part[7] not in "CD" or not part[4:7].isdigit():
            continue
        amount = int(part[8:]) * (1 if part[7] == "C" else -1)
        currency = int(part[4:7])
        if part[2:4] == "01":
            ledger = amount
        elif part[2:4] == "02":
            available = amount
    return ledger, available, currency


def answer_to_result(name: str, answer: Message) -> AuthResult:
    """The ``AuthResult`` for the issuer's 0110/0210 (an unknown 39 is a decline, 05)."""
    raw = answer.get(39)
    code = _CODES.get(raw) if isinstance(raw, str) else None
    message = (
        f"remote issuer {name}: 39={raw!s}"
        if isinstance(raw, str)
        else f"remote issuer {name}: no field 39"
    )
    if code is None:
        code = RC.DO_NOT_HONOUR
        message += " (not a code we use: declined as 05)"
    auth = answer.get(38)
    ledger = available = currency = None
    f54 = answer.get(54)
    if isinstance(f54, str):
        ledger, available, currency = _balances(f54)
    script = answer.get(55)
    return AuthResult(
        code,
        message,
        auth_code=auth.strip() or None if isinstance(auth, str) else None,
        available_balance=available,
        ledger_balance=ledger,
        currency=currency,
        issuer_script=script if isinstance(script, bytes) else None,
    )


# -- the issuer ---------------------------------------------------------------------------
class RemoteIssuerClient:
    """The ``RemoteIssuer`` the core calls for one remote issuer (register under its name)."""

    def __init__(
        self,
        config: RemoteIssuerConfig,
        hsm: HsmClient,
        saf: SafQueue,
        terminal_of: Callable[[str], Terminal | None],
    ) -> None:
        self.config = config
        self.name = config.name
        self.hsm = hsm
        self.saf = saf
        self._terminal_of = terminal_of
        self._wake = asyncio.Event()
        self.client = IsoClient(
            config.name,
            config.host,
            config.port,
            spec=config.spec,
            framing=config.framing,
            echo_interval=config.echo_interval,
            echo_timeout=config.timeout,
            backoff_max=config.reconnect_max,
            on_connected=self._wake.set,
        )
        self._forwarder: asyncio.Task[None] | None = None
        self._closed = False
        self.timeouts = 0  # requests answered 91 after the issuer did not answer in time
        self.reversals_delivered = 0

    def start(self) -> None:
        self.client.start()
        if self._forwarder is None:
            self._forwarder = asyncio.create_task(self._forward(), name=f"saf-{self.name}")

    async def close(self) -> None:
        self._closed = True  # also ends the loop if a cancellation gets lost in wait_for
        self._wake.set()
        if self._forwarder is not None:
            self._forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._forwarder
            self._forwarder = None
        await self.client.close()

    def _result(self, code: ResponseCode, why: str) -> AuthResult:
        return AuthResult(code, f"remote issuer {self.name}: {why}")

    async def authorize(self, req: AuthRequest) -> AuthResult:
        if req.txn_type in _REVERSING:
            return await self._forward_reversal(req)
        if not self.client.connected:  # before the HSM work: nothing will be sent
            return self._result(RC.ISSUER_UNAVAILABLE, "not connected")
        try:
            pin = await self._translate_pin(req)
            msg = request_to_message(req, pin)
        except HsmError as exc:
            if exc.code not in BAD_PIN_BLOCK_CODES:
                raise  # the core answers 96 for an HSM failure
            # garbage under the acquirer's key (keys out of sync): as the core does on-us
            return self._result(RC.INCORRECT_PIN, "PIN block not valid under the acquirer key")
        except ValueError as exc:  # incl. Iso8583Error: the request cannot be expressed
            field_error = RC.INVALID_TRANSACTION if "txn_type" in str(exc) else RC.FORMAT_ERROR
            return self._result(field_error, str(exc))
        try:
            answer = await self.client.request(msg, self.config.timeout)
        except ConnectionDownError:
            return self._result(RC.ISSUER_UNAVAILABLE, "not connected")
        except MuxKeyInUseError as exc:
            return self._result(RC.DUPLICATE_TRANSMISSION, str(exc))
        except Iso8583Error as exc:
            return self._result(RC.FORMAT_ERROR, str(exc))
        except TimeoutError:
            # Outcome unknown: the issuer may have debited the card. Never resend it; owe a
            # reversal, durable before the 91 goes back.
            # Not sent at once: the first try waits ``saf_retry``, so a stalled issuer is less
            # likely to see the reversal before the request it reverses.
            self.timeouts += 1
            await self.saf.add(self.name, reversal_for(msg, self.client.next_stan()))
            log.warning(
                "%s: no answer in %.1fs, 91 + reversal queued", self.name, self.config.timeout
            )
            return self._result(RC.ISSUER_UNAVAILABLE, "no answer in time (reversal queued)")
        return answer_to_result(self.name, answer)

    async def _translate_pin(self, req: AuthRequest) -> bytes | None:
        """The PIN block under the issuer's ZPK: CA from the terminal TPK, CC from an
        acquirer ZPK. The clear PIN exists only inside the HSM."""
        if req.pin_block is None:
            return None
        cfg = self.config
        term = self._terminal_of(req.terminal_id)
        if term is not None and term.tpk:
            return await self.hsm.translate_pin_tpk_to_zpk(
                term.tpk, cfg.zpk, req.pin_block, req.pan, req.pin_block_format,
                cfg.pin_block_format,
            )  # fmt: skip
        acquirer_zpk = cfg.acquirer_zpks.get(req.acquirer_id)
        if acquirer_zpk:
            return await self.hsm.translate_pin_zpk_to_zpk(
                acquirer_zpk, cfg.zpk, req.pin_block, req.pan, req.pin_block_format,
                cfg.pin_block_format,
            )  # fmt: skip
        raise ValueError("terminal_id: no PIN key for this terminal or acquirer")

    async def _forward_reversal(self, req: AuthRequest) -> AuthResult:
        try:
            msg = acquirer_reversal(req, self.client.next_stan())
        except ValueError as exc:
            return self._result(RC.INVALID_TRANSACTION, str(exc))
        await self.saf.add(self.name, msg)
        self._wake.set()
        return self._result(RC.APPROVED, "reversal accepted, forwarded by store-and-forward")

    # -- store and forward ----------------------------------------------------------------
    async def _forward(self) -> None:
        """Deliver queued reversals, oldest first, while the line is up; repeat as 0421."""
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.saf_retry)
            self._wake.clear()
            if self._closed or not self.client.connected:
                continue
            try:
                await self._deliver_pending()
            except Exception:  # keep forwarding whatever one entry did (logged, retried)
                log.exception("%s: store-and-forward pass failed", self.name)

    async def _deliver_pending(self) -> None:
        for entry in await self.saf.pending(self.name):
            msg = entry.message
            if entry.attempts > 0:
                msg = Message("0421", dict(msg.fields))
            await self.saf.mark_attempt(entry.entry_id)  # durable before it can be seen
            try:
                await self.client.request(msg, self.config.timeout)
            except (ConnectionDownError, TimeoutError):
                return  # the line is down or slow: retry on reconnect / after saf_retry
            except MuxKeyInUseError:
                continue
            except Iso8583Error as exc:  # our own row no longer encodes: skip, keep it queued
                log.error(
                    "%s: queued reversal %d does not encode: %s", self.name, entry.entry_id, exc
                )
                continue
            await self.saf.acknowledge(entry.entry_id)
            self.reversals_delivered += 1


def load_remote_issuers(path: Path) -> list[RemoteIssuerConfig]:
    """The ``[remote_issuers.<name>]`` tables of a TOML file (name = the BIN route's
    destination). Keys: host, port, zpk (under the LMK), and optionally spec, length_header
    (binary2 | ascii4), timeout, echo_interval, saf_retry, reconnect_max and
    ``acquirer_zpks`` (acquirer id -> ZPK under the LMK). ValueError names a bad key."""
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    tables = data.get("remote_issuers", {})
    if not isinstance(tables, dict):
        raise ValueError("remote_issuers: must be a table of tables")
    return [RemoteIssuerConfig.from_mapping(name, d) for name, d in tables.items()]


@dataclass
class RemoteIssuers:
    """Every remote issuer of one switch, sharing its reversal queue."""

    issuers: dict[str, RemoteIssuerClient]
    saf: SafQueue

    async def close(self) -> None:
        for issuer in self.issuers.values():
            await issuer.close()
        self.saf.close()


async def start_remote_issuers(
    core: Any, configs: list[RemoteIssuerConfig], state_dir: Path
) -> RemoteIssuers:
    """Start and register each issuer on ``core`` (a ``SwitchCore``); the reversal queue is
    ``state_dir/saf.db``. Close the result before closing the core."""
    saf = open_saf(state_dir)
    issuers = {c.name: await attach_remote_issuer(core, c, saf) for c in configs}
    return RemoteIssuers(issuers, saf)


async def attach_remote_issuer(
    core: Any, config: RemoteIssuerConfig, saf: SafQueue
) -> RemoteIssuerClient:
    """Build, start and register the issuer on ``core`` (a ``SwitchCore``) under its name."""
    issuer = RemoteIssuerClient(config, core.hsm, saf, core.terminal)
    issuer.start()
    core.register_remote_issuer(config.name, issuer)
    return issuer


def open_saf(state_dir: Path) -> SafQueue:
    """The switch's reversal queue: ``state_dir/saf.db``, rows sealed under a key derived
    from ``state_dir/pan.key`` (created by ``SwitchCore.open``)."""
    state_dir = Path(state_dir)
    key = bytes.fromhex((state_dir / "pan.key").read_text().strip())
    return SafQueue(state_dir / "saf.db", key)
