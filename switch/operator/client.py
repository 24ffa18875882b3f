"""A small typed async client of the operator API (what ``switch txn|card|account`` use).

    async with OperatorClient("127.0.0.1:50051", "alice", key) as op:
        card = await op.set_card_status(
            card_request(pan="6280580000000017", reason="card lost"), "blocked"
        )

Errors raise ``grpc.aio.AioRpcError`` (``.code()``, ``.details()`` naming the field).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from switch.api.client import ClientTls, CredentialedClient
from switch.gen.switch.v1 import operator_pb2 as opb
from switch.gen.switch.v1 import operator_pb2_grpc as ogrpc


@dataclass(frozen=True, slots=True)
class Search:
    """The filters of ``switch txn search`` (every one that is set must match)."""

    terminal_id: str = ""
    stan: str = ""
    rrn: str = ""
    pan: str = ""
    card_id: int = 0
    from_time: dt.datetime | None = None
    to_time: dt.datetime | None = None
    response_code: str = ""

    def request(self, page_size: int, page_token: str) -> opb.SearchTransactionsRequest:
        req = opb.SearchTransactionsRequest(
            terminal_id=self.terminal_id, stan=self.stan, rrn=self.rrn, pan=self.pan,
            card_id=self.card_id, response_code=self.response_code, page_size=page_size,
            page_token=page_token,
        )  # fmt: skip
        if self.from_time is not None:
            req.from_time.FromDatetime(self.from_time)
        if self.to_time is not None:
            req.to_time.FromDatetime(self.to_time)
        return req


def card_request(pan: str = "", card_id: int = 0, reason: str = "") -> opb.CardRequest:
    return opb.CardRequest(pan=pan, card_id=card_id, reason=reason)


class OperatorClient(CredentialedClient):
    def __init__(
        self,
        target: str,
        operator_id: str,
        key: str,
        *,
        timeout: float = 10.0,
        tls: ClientTls | None = None,
    ) -> None:
        super().__init__(
            target,
            (("x-operator-id", operator_id), ("x-operator-key", key)),
            timeout=timeout,
            tls=tls,
        )
        self.stub = ogrpc.OperatorStub(self.channel)

    async def get_transaction(self, transaction_id: str) -> opb.JournalEntry:
        req = opb.GetTransactionRequest(transaction_id=transaction_id)
        return await self._call(self.stub.GetTransaction, req, opb.JournalEntry)

    async def search(
        self, search: Search, *, page_size: int = 50, page_token: str = ""
    ) -> opb.SearchTransactionsResponse:
        return await self._call(
            self.stub.SearchTransactions,
            search.request(page_size, page_token),
            opb.SearchTransactionsResponse,
        )

    async def get_card(self, card: opb.CardRequest) -> opb.CardInfo:
        return await self._call(self.stub.GetCard, card, opb.CardInfo)

    async def set_card_status(
        self, card: opb.CardRequest, status: str, *, only_if_blocked: bool = False
    ) -> opb.CardInfo:
        req = opb.SetCardStatusRequest(card=card, status=status, only_if_blocked=only_if_blocked)
        return await self._call(self.stub.SetCardStatus, req, opb.CardInfo)

    async def reset_pin_tries(self, card: opb.CardRequest) -> opb.CardInfo:
        return await self._call(self.stub.ResetPinTries, card, opb.CardInfo)

    async def get_account(self, account_number: str) -> opb.AccountInfo:
        req = opb.GetAccountRequest(account_number=account_number)
        return await self._call(self.stub.GetAccount, req, opb.AccountInfo)

    # -- the card base import of a running switch (switch import cards|accounts) ------------
    async def import_progress(self, kind: str, file: opb.ImportFile) -> opb.ImportProgress:
        req = opb.ImportProgressRequest(kind=kind, file=file)
        return await self._call(self.stub.GetImportProgress, req, opb.ImportProgress)

    async def import_batch(self, kind: str, batch: opb.ImportBatch) -> opb.ImportBatchResult:
        method = self.stub.ImportCards if kind == "cards" else self.stub.ImportAccounts
        return await self._call(method, batch, opb.ImportBatchResult)
