"""The reference-data reads both store backends make at startup, and the seeding and
operator inserts, written once.

Terminals, merchants, billers, BIN routes, recent idempotency keys, the day's limit usage
and a setting are the same SQL and the same row-to-domain mapping on SQLite and on
PostgreSQL; only the placeholder differs (``?`` for sqlite3, ``%s`` for psycopg). A backend
mixes ``ReferenceReads`` in, names its placeholder in ``_PH`` and provides ``_q`` (its
blocking read), so a change to a query or a mapping cannot land on one backend only.
"""

# ruff: noqa: S608 -- the f-strings only splice the backend's fixed placeholder, never input

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from switch.core.domain import Account, Bill, Biller, BinRoute, Card, Merchant, Terminal
from switch.store.postgres_sql import ACCOUNT_COLS, CARD_COLS


class ReferenceReads:
    """Startup reads shared by ``SqliteStore`` and ``PostgresStore``."""

    #: the backend's placeholder: ``?`` (sqlite3) or ``%s`` (psycopg)
    _PH: ClassVar[str]

    def _q(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """The backend's blocking read (each backend defines its own)."""
        raise NotImplementedError

    def terminals(self) -> list[Terminal]:
        rows = self._q(
            "SELECT terminal_id, kind, acquirer_id, own, location, tpk, tak, pin_block_format, "
            "settlement_account_id FROM terminals"
        )
        return [
            Terminal(str(a), str(b), str(c), bool(d), str(e), str(f), str(g), str(h), int(i))
            for a, b, c, d, e, f, g, h, i in rows
        ]

    def merchants(self) -> list[Merchant]:
        rows = self._q(
            "SELECT merchant_id, name, mcc, city, settlement_account_id, api_key_hash, "
            "terminal_id FROM merchants"
        )
        return [
            Merchant(str(a), str(b), str(c), str(d), int(e), bytes(f), str(g))
            for a, b, c, d, e, f, g in rows
        ]

    def billers(self) -> list[Biller]:
        rows = self._q(
            "SELECT biller_id, name, category, settlement_account_id, reference_pattern "
            "FROM billers"
        )
        return [Biller(str(a), str(b), str(c), int(d), str(e)) for a, b, c, d, e in rows]

    def bin_routes(self) -> list[BinRoute]:
        return [
            BinRoute(str(p), str(d))
            for p, d in self._q("SELECT prefix, destination FROM bin_routes")
        ]

    def recent_idempotency_keys(self, since: float) -> list[str]:
        sql = f"SELECT key FROM idempotency WHERE created_at >= {self._PH}"
        return [str(k) for (k,) in self._q(sql, (since,))]

    def limit_usage(self, business_day: int) -> list[tuple[int, str, int, int]]:
        """Per approved, categorised journal row of ``business_day``: the amount still
        counting against the card's limits (less its reversals/voids) and 1 if it still
        counts as a use (0 once wholly undone)."""
        rows = self._q(
            "SELECT o.card_id, o.categories, o.amount - COALESCE(SUM(r.amount), 0), "
            "CASE WHEN COALESCE(SUM(r.amount), 0) >= o.amount THEN 0 ELSE 1 END "
            "FROM journal o LEFT JOIN journal r ON r.original_txn_id = o.txn_id "
            "AND r.response_code = '00' AND r.txn_type IN ('reversal', 'void') "
            f"WHERE o.business_day = {self._PH} AND o.response_code = '00' "
            "AND o.categories != '' AND o.card_id IS NOT NULL GROUP BY o.txn_id",
            (business_day,),
        )
        return [(int(c), str(k), int(a), int(n)) for c, k, a, n in rows]

    def setting(self, name: str) -> str | None:
        rows = self._q(f"SELECT value FROM settings WHERE name = {self._PH}", (name,))
        return str(rows[0][0]) if rows else None


class ReferenceWrites:
    """Seeding and operator inserts shared by ``SqliteStore`` and ``PostgresStore``: the
    same statements (columns named, in the tables' order) and the same parameter tuples; each
    backend runs them in its own admin transaction (``_admin``, until ``flush_admin``)."""

    _PH: ClassVar[str]

    def _admin(self, sql: str, args: tuple[object, ...]) -> None:
        """The backend's admin statement (each backend defines its own)."""
        raise NotImplementedError

    def _insert(self, table: str, columns: str, args: tuple[object, ...]) -> None:
        marks = ", ".join([self._PH] * len(args))
        self._admin(f"INSERT INTO {table} ({columns}) VALUES ({marks})", args)

    def insert_account(self, a: Account) -> None:
        self._insert(
            "accounts", ACCOUNT_COLS,
            (a.account_id, a.number, a.kind.value, a.holder, a.phone, a.currency, a.balance,
             a.held, int(a.may_go_negative)),
        )  # fmt: skip

    def insert_card(self, c: Card) -> None:
        self._insert(
            "cards", CARD_COLS,
            (c.card_id, c.pan_hash, c.pan_first6, c.pan_last4, c.account_id, c.product,
             c.expiry, c.service_code, c.pan_sequence, c.pvki, c.pvv, c.ibm_offset, c.pvk,
             c.cvk, c.mk_ac, c.status.value, c.pin_tries, c.otp_tries, c.activated_at),
        )  # fmt: skip

    def insert_terminal(self, t: Terminal) -> None:
        self._insert(
            "terminals",
            "terminal_id, kind, acquirer_id, own, location, tpk, tak, pin_block_format, "
            "settlement_account_id",
            (t.terminal_id, t.kind, t.acquirer_id, int(t.own), t.location, t.tpk, t.tak,
             t.pin_block_format, t.settlement_account_id),
        )  # fmt: skip

    def insert_merchant(self, m: Merchant) -> None:
        self._insert(
            "merchants",
            "merchant_id, name, mcc, city, settlement_account_id, api_key_hash, terminal_id",
            (m.merchant_id, m.name, m.mcc, m.city, m.settlement_account_id, m.api_key_hash,
             m.terminal_id),
        )  # fmt: skip

    def insert_biller(self, b: Biller) -> None:
        self._insert(
            "billers",
            "biller_id, name, category, settlement_account_id, reference_pattern",
            (b.biller_id, b.name, b.category, b.settlement_account_id, b.reference_pattern),
        )

    def insert_bill(self, b: Bill) -> None:
        self._insert(
            "bills",
            "biller_id, reference, amount_due, paid_txn",
            (b.biller_id, b.reference, b.amount_due, b.paid_txn),
        )

    def insert_bin_route(self, r: BinRoute) -> None:
        self._insert("bin_routes", "prefix, destination", (r.prefix, r.destination))

    def put_setting(self, name: str, value: str) -> None:
        p = self._PH
        self._admin(
            f"INSERT INTO settings (name, value) VALUES ({p}, {p}) ON CONFLICT (name) "
            "DO UPDATE SET value = excluded.value",
            (name, value),
        )
