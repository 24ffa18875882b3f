"""The ``switch.v1.Operator`` servicer: authenticate the operator, validate, act, audit, map.

Separate credentials from the merchants': metadata ``x-operator-id`` / ``x-operator-key``
checked against ``state_dir/operators.json`` (``switch.operator.keys``). A merchant's headers
carry no operator id, so they are refused here (UNAUTHENTICATED), and an operator's carry no
merchant id, so the merchant services refuse them the same way.

Card changes go through the core's own lifecycle calls, on the live card the running switch
authorizes with: a card blocked here is declined 62 by the very next request. Reads of the
journal run on their own read-only connection, off the event loop
(``switch.store.sqlite_operator``). Every call, refusals included, leaves an audit row
(``switch.operator.audit``) before its answer leaves.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeAlias, TypeVar

import grpc

from switch.api import mapping as m
from switch.api.mapping import ApiError, invalid
from switch.cardbase.importer import IssuerKeys
from switch.cardbase.keys import KeysError, check_values
from switch.cardbase.live import MAX_BATCH, FileRef, LiveImport, LiveImportError
from switch.cardbase.reader import RawRecord
from switch.cardbase.records import ACCOUNT_FIELDS, CARD_FIELDS
from switch.core.domain import Account, Card, CardStatus, mask_pan
from switch.core.service import CoreError, SwitchCore
from switch.digits import is_ascii_digits
from switch.gen.switch.v1 import operator_pb2 as opb
from switch.gen.switch.v1 import operator_pb2_grpc as ogrpc
from switch.gen.switch.v1 import types_pb2 as pb
from switch.operator.audit import Action, record
from switch.operator.keys import OperatorKeys, valid_operator_id
from switch.store.api import AuditRow, JournalRow, StoreError
from switch.store.sqlite_operator import JournalFilter, OperatorReads, SearchTooBroad

OPERATOR_ID_HEADER = "x-operator-id"
OPERATOR_KEY_HEADER = "x-operator-key"
DEFAULT_PAGE = 50
MAX_PAGE = 500

T = TypeVar("T")
Ctx: TypeAlias = grpc.aio.ServicerContext
log = logging.getLogger("switch.operator")


def _printable(value: str, field: str, limit: int) -> str:
    if len(value) > limit or not value.isprintable():
        raise invalid(f"{field}: at most {limit} printable characters")
    return value


def journal_pb(j: JournalRow) -> opb.JournalEntry:
    return opb.JournalEntry(
        transaction_id=j.txn_id,
        created_at=m.timestamp(j.created_at),
        txn_type=j.txn_type,
        channel=j.channel,
        response_code=j.response_code,
        auth_code=j.auth_code or "",
        card_id=j.card_id or 0,
        masked_pan=j.masked_pan,
        amount=pb.Money(amount_minor=j.amount, currency=j.currency),
        fee_minor=j.fee,
        acquirer_id=j.acquirer_id,
        terminal_id=j.terminal_id,
        stan=j.stan,
        transmission=j.transmission,
        rrn=j.rrn,
        merchant_id=j.merchant_id,
        original_transaction_id=j.original_txn_id or "",
        route=j.route,
        message=j.message,
        refused=j.refused,
        business_day=j.business_day,
    )


def account_pb(a: Account) -> opb.AccountInfo:
    return opb.AccountInfo(
        account_number=a.number,
        kind=a.kind.value,
        holder=a.holder,
        phone=a.phone,
        balance_minor=a.balance,
        held_minor=a.held,
        available_minor=a.available,
        currency=a.currency,
    )


def _file_ref(kind: str, f: opb.ImportFile) -> FileRef:
    ref = FileRef(kind, f.file_sha256, f.file_name, f.update)
    try:
        ref.check()
    except LiveImportError as e:
        raise invalid(str(e)) from None
    return ref


def _raw_records(records: list[opb.ImportRecord], known: frozenset[str]) -> list[RawRecord]:
    """The records as the file reader gave them to the client; a field the layout does not
    have rejects its record (as the JSON Lines reader does)."""
    out: list[RawRecord] = []
    previous = 0
    for i, r in enumerate(records):
        if r.line <= previous:
            raise invalid(f"records[{i}].line: lines must increase (after {previous})")
        previous = r.line
        fields = dict(r.fields)
        error = r.error
        if not error:
            unknown = sorted(set(fields) - known)
            if unknown:
                error, fields = f"{unknown[0][:40]}: unknown field", {}
        out.append(RawRecord(r.line, 0, r.line, fields if not error else {}, error[:300]))
    return out


def _progress_pb(p: object) -> opb.ImportProgress:
    from switch.store.sqlite_cardbase import Progress

    assert isinstance(p, Progress)
    return opb.ImportProgress(
        next_offset=p.next_offset, next_line=p.next_line, loaded=p.loaded, updated=p.updated,
        rejected=p.rejected, done=p.done,
    )  # fmt: skip


class OperatorServicer(ogrpc.OperatorServicer):
    def __init__(
        self,
        core: SwitchCore,
        keys: OperatorKeys,
        reads: OperatorReads,
        imports: LiveImport | None = None,
    ) -> None:
        self.core = core
        self.keys = keys
        self.reads = reads
        self.imports = imports
        self._checked_keys: dict[IssuerKeys, dict[str, str]] = {}

    # -- authentication and the audit around every call ----------------------------------------
    async def _authenticate(self, context: Ctx, action: str) -> Action:
        operator_id, key = m.credentials(context, OPERATOR_ID_HEADER, OPERATOR_KEY_HEADER)
        if not self.keys.check(operator_id, key):
            # the claimed id is kept (when it is one) so repeated attempts show in the trail
            claimed = operator_id if valid_operator_id(operator_id) else "?"
            log.warning("operator %s: refused credentials for %s", claimed, action)
            row = Action(claimed, action, self.core.now()).row("refused: UNAUTHENTICATED")
            try:
                await record(self.core.store, row)
            except StoreError:
                pass  # the refusal stands either way
            raise ApiError(
                grpc.StatusCode.UNAUTHENTICATED,
                f"{OPERATOR_KEY_HEADER}: invalid operator credentials",
            )
        return Action(operator_id, action, self.core.now())

    async def _call(self, context: Ctx, action: str, body: Callable[[Action], Awaitable[T]]) -> T:
        try:
            act = await self._authenticate(context, action)
        except ApiError as e:
            await context.abort(e.code, e.message)
            raise AssertionError("unreachable") from None  # abort always raises
        error: ApiError
        try:
            result = await body(act)
            if not act.recorded:
                await record(self.core.store, act.row("ok"))
            return result
        except ApiError as e:
            error = e
        except SearchTooBroad as e:
            error = ApiError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(e))
        except StoreError:
            error = ApiError(grpc.StatusCode.UNAVAILABLE, "switch: store unavailable; retry later")
        except Exception:  # a defect: answered and audited all the same, the trace in the log
            log.exception("operator %s: %s failed", act.operator_id, action)
            error = ApiError(grpc.StatusCode.INTERNAL, f"{action}: internal error")
        if not act.recorded:
            try:
                await record(
                    self.core.store, act.row(f"refused: {error.code.name}: {error.message}")
                )
            except StoreError:
                error = ApiError(
                    grpc.StatusCode.UNAVAILABLE, "switch: store unavailable; retry later"
                )
        await context.abort(error.code, error.message)
        raise AssertionError("unreachable")

    # -- cards -------------------------------------------------------------------------------
    async def _card(self, req: opb.CardRequest, act: Action, prefix: str = "") -> Card:
        if req.pan and req.card_id:
            raise invalid(f"{prefix}pan: give the PAN or the card_id, not both")
        if req.reason:
            act.details.append(f"reason: {_printable(req.reason, prefix + 'reason', 200)}")
        if req.pan:
            pan = m.pan(req.pan, f"{prefix}pan")
            act.target = f"card {mask_pan(pan)}"
            card = await self.core.live_card(self.core.pan_hash(pan))
            if card is None:
                raise ApiError(grpc.StatusCode.NOT_FOUND, f"{prefix}pan: no card with this number")
        elif req.card_id:
            act.target = f"card {req.card_id}"
            card = await self.core.live_card_by_id(req.card_id) if req.card_id > 0 else None
            if card is None:
                raise ApiError(grpc.StatusCode.NOT_FOUND, f"{prefix}card_id: no card {req.card_id}")
        else:
            raise invalid(f"{prefix}pan: the PAN or the card_id is required")
        act.target = f"card {card.card_id} ({card.masked_pan})"
        return card

    async def _card_info(self, card: Card, previous: str = "") -> opb.CardInfo:
        row = await self.reads.card_row(card.card_id)
        info = opb.CardInfo(
            card_id=card.card_id,
            masked_pan=card.masked_pan,
            status=card.status.value,
            product=card.product,
            expiry=card.expiry,
            service_code=card.service_code,
            pan_sequence=card.pan_sequence,
            pin_tries=card.pin_tries,
            otp_tries=card.otp_tries,
            account_number="" if row is None else row.account_number,
            holder="" if row is None else row.holder,
            previous_status=previous,
        )
        if card.activated_at is not None:
            info.activated_at.CopyFrom(m.timestamp(card.activated_at))
        return info

    async def GetCard(self, request: opb.CardRequest, context: Ctx) -> opb.CardInfo:
        async def body(act: Action) -> opb.CardInfo:
            return await self._card_info(await self._card(request, act))

        return await self._call(context, "GetCard", body)

    async def SetCardStatus(self, request: opb.SetCardStatusRequest, context: Ctx) -> opb.CardInfo:
        async def body(act: Action) -> opb.CardInfo:
            try:
                status = CardStatus(request.status)
            except ValueError:
                names = ", ".join(s.value for s in CardStatus)
                raise invalid(f"status: must be one of {names}") from None
            act.details.append(f"-> {status.value}")
            card = await self._card(request.card, act, "card.")
            before = card.status
            act.details[0] = f"{before.value} -> {status.value}"
            if request.only_if_blocked and before is not CardStatus.BLOCKED:
                raise ApiError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"status: the card is {before.value}, not blocked",
                )
            outcome = "unchanged" if before is status else "ok"
            # the pan hash, not the PAN: the card may have been named by its id
            try:
                await self.core.set_card_status(card.pan_hash, status, audit=act.row(outcome))
            except CoreError as e:
                raise ApiError(grpc.StatusCode.FAILED_PRECONDITION, str(e)) from None
            act.recorded = True
            log.info(
                "operator %s: card %d %s -> %s",
                act.operator_id, card.card_id, before.value, card.status.value,
            )  # fmt: skip
            return await self._card_info(card, before.value)

        return await self._call(context, "SetCardStatus", body)

    async def ResetPinTries(self, request: opb.CardRequest, context: Ctx) -> opb.CardInfo:
        async def body(act: Action) -> opb.CardInfo:
            card = await self._card(request, act)
            act.details.insert(0, f"pin_tries {card.pin_tries} -> 0")
            try:
                await self.core.reset_pin_tries(card.pan_hash, audit=act.row("ok"))
            except CoreError as e:
                raise ApiError(grpc.StatusCode.FAILED_PRECONDITION, str(e)) from None
            act.recorded = True
            return await self._card_info(card)

        return await self._call(context, "ResetPinTries", body)

    # -- accounts ----------------------------------------------------------------------------
    async def GetAccount(self, request: opb.GetAccountRequest, context: Ctx) -> opb.AccountInfo:
        async def body(act: Action) -> opb.AccountInfo:
            number = request.account_number
            if not number:
                raise invalid("account_number: required")
            _printable(number, "account_number", 34)
            act.target = f"account {number}"
            account = await self.core.live_account_by_number(number)
            if account is None:
                raise ApiError(grpc.StatusCode.NOT_FOUND, f"account_number: no account {number!r}")
            return account_pb(account)

        return await self._call(context, "GetAccount", body)

    # -- the journal -------------------------------------------------------------------------
    async def GetTransaction(
        self, request: opb.GetTransactionRequest, context: Ctx
    ) -> opb.JournalEntry:
        async def body(act: Action) -> opb.JournalEntry:
            tid = request.transaction_id
            if not tid:
                raise invalid("transaction_id: required")
            if len(tid) > 32 or not is_ascii_digits(tid):
                raise invalid("transaction_id: digits only")
            act.target = f"txn {tid}"
            j = await self.reads.journal_entry(tid)
            if j is None:
                raise ApiError(grpc.StatusCode.NOT_FOUND, f"transaction_id: no transaction {tid}")
            return journal_pb(j)

        return await self._call(context, "GetTransaction", body)

    async def _filter(self, r: opb.SearchTransactionsRequest, act: Action) -> JournalFilter:
        terminal = stan = rrn = code = None
        card_id: int | None = None
        start = end = None
        if r.terminal_id:
            terminal = _printable(r.terminal_id, "terminal_id", 32)
            act.details.append(f"terminal_id={terminal}")
        if r.stan:
            if len(r.stan) > 6 or not is_ascii_digits(r.stan):
                raise invalid("stan: 1 to 6 digits")
            stan = r.stan.zfill(6)
            act.details.append(f"stan={stan}")
        if r.rrn:
            if len(r.rrn) > 12 or not (r.rrn.isascii() and r.rrn.isalnum()):
                raise invalid("rrn: 1 to 12 letters or digits")
            rrn = r.rrn
            act.details.append(f"rrn={rrn}")
        if r.response_code:
            if len(r.response_code) != 2 or not r.response_code.isascii():
                raise invalid("response_code: 2 characters, e.g. 62")
            code = r.response_code
            act.details.append(f"response_code={code}")
        if r.pan and r.card_id:
            raise invalid("pan: give the PAN or the card_id, not both")
        if r.pan:
            pan = m.pan(r.pan, "pan")
            act.details.append(f"pan={mask_pan(pan)}")  # never the PAN itself
            card = await self.core.live_card(self.core.pan_hash(pan))
            if card is None:
                raise ApiError(grpc.StatusCode.NOT_FOUND, "pan: no card with this number")
            card_id = card.card_id
        elif r.card_id:
            if r.card_id < 0:
                raise invalid("card_id: must be positive")
            card_id = r.card_id
            act.details.append(f"card_id={card_id}")
        if r.HasField("from_time"):
            start = r.from_time.ToNanoseconds() / 1e9
            act.details.append(f"from={r.from_time.ToJsonString()}")
        if r.HasField("to_time"):
            end = r.to_time.ToNanoseconds() / 1e9
            act.details.append(f"to={r.to_time.ToJsonString()}")
        if start is not None and end is not None and end < start:
            raise invalid("to_time: before from_time")
        return JournalFilter(terminal, stan, rrn, card_id, start, end, code)

    async def SearchTransactions(
        self, request: opb.SearchTransactionsRequest, context: Ctx
    ) -> opb.SearchTransactionsResponse:
        async def body(act: Action) -> opb.SearchTransactionsResponse:
            act.target = "journal"
            size = request.page_size or DEFAULT_PAGE
            if not 1 <= size <= MAX_PAGE:
                raise invalid(f"page_size: must be 1..{MAX_PAGE}")
            token = request.page_token
            if token and not (len(token) <= 32 and is_ascii_digits(token)):
                raise invalid("page_token: not a token from a previous response")
            f = await self._filter(request, act)
            if token:
                act.details.append(f"page_token={token}")
            rows = await self.reads.search(f, before_txn_id=token or None, limit=size + 1)
            more = len(rows) > size
            rows = rows[:size]
            act.details.append(f"{len(rows)} found")
            return opb.SearchTransactionsResponse(
                transactions=[journal_pb(j) for j in rows],
                next_page_token=rows[-1].txn_id if more else "",
            )

        return await self._call(context, "SearchTransactions", body)

    # -- the card base import of a running switch (switch.cardbase.live) ----------------------
    def _live_import(self) -> LiveImport:
        if self.imports is None:
            raise ApiError(grpc.StatusCode.UNIMPLEMENTED, "import: not served by this switch")
        return self.imports

    async def _issuer_keys(self, f: opb.ImportFile) -> tuple[IssuerKeys, dict[str, str]]:
        """The file's issuer keys and their check values by this switch's HSM (once each)."""
        keys = IssuerKeys(f.pvk, f.cvk, f.mk_ac)
        for name in ("pvk", "cvk", "mk_ac"):
            value = getattr(keys, name)
            if not value or len(value) > 200 or not (value.isascii() and value.isalnum()):
                raise invalid(f"file.{name}: required, a key cryptogram under the LMK")
        kcv = self._checked_keys.get(keys)
        if kcv is None:
            try:
                kcv = await check_values(self.core.hsm, keys)
            except KeysError as e:
                raise invalid(f"file.{str(e).removeprefix('keys.')}") from None
            self._checked_keys[keys] = kcv
        return keys, kcv

    async def GetImportProgress(
        self, request: opb.ImportProgressRequest, context: Ctx
    ) -> opb.ImportProgress:
        async def body(act: Action) -> opb.ImportProgress:
            live = self._live_import()
            ref = _file_ref(request.kind, request.file)
            act.target = f"{ref.kind} file {ref.name} ({ref.sha256[:12]})"
            kcv: dict[str, str] = {}
            if ref.kind == "cards":
                _, kcv = await self._issuer_keys(request.file)
            out = _progress_pb(await live.progress(ref))
            out.key_check_values.update(kcv)
            act.details.append(f"at line {out.next_line}" + (", done" if out.done else ""))
            return out

        return await self._call(context, "GetImportProgress", body)

    async def _import(self, kind: str, b: opb.ImportBatch, act: Action) -> opb.ImportBatchResult:
        live = self._live_import()
        ref = _file_ref(kind, b.file)
        act.target = f"{kind} file {ref.name} ({ref.sha256[:12]})"
        if len(b.records) > MAX_BATCH:
            raise invalid(f"records: at most {MAX_BATCH} a batch")
        if b.start_offset < 0 or b.end_offset < b.start_offset or b.end_line < 0:
            raise invalid("end_offset: the batch must end at or after its start_offset")
        keys = (await self._issuer_keys(b.file))[0] if kind == "cards" else None
        records = _raw_records(list(b.records), CARD_FIELDS if kind == "cards" else ACCOUNT_FIELDS)

        def audit(summary: str) -> AuditRow:
            act.details.append(summary)
            return act.row("ok")

        try:
            out = await live.apply(
                ref, b.start_offset, records, (b.end_offset, b.end_line), b.last,
                keys=keys, audit=audit, now=self.core.now(),
            )  # fmt: skip
        except LiveImportError as e:
            code = (
                grpc.StatusCode.FAILED_PRECONDITION
                if e.precondition
                else grpc.StatusCode.INVALID_ARGUMENT
            )
            raise ApiError(code, str(e)) from None
        if out.replayed:
            act.details.append("already applied: nothing changed")
        else:
            act.recorded = True  # committed with the batch
            log.info("operator %s: import %s: %s", act.operator_id, act.target, act.details[-1])
        return opb.ImportBatchResult(
            loaded=out.loaded,
            updated=out.updated,
            rejects=[opb.ImportReject(line=r.line, reason=r.reason) for r in out.rejects],
            total=_progress_pb(out.total),
            replayed=out.replayed,
        )

    async def ImportCards(self, request: opb.ImportBatch, context: Ctx) -> opb.ImportBatchResult:
        return await self._call(
            context, "ImportCards", lambda act: self._import("cards", request, act)
        )

    async def ImportAccounts(self, request: opb.ImportBatch, context: Ctx) -> opb.ImportBatchResult:
        return await self._call(
            context, "ImportAccounts", lambda act: self._import("accounts", request, act)
        )
