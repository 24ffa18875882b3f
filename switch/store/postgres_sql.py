"""The SQL of the PostgreSQL store's group commit, and the arguments of one batch.

Why one statement per batch: a group commit is a fixed set of row sets (journal, postings,
balances, card counters, holds, ...). Each row set goes in as a handful of typed arrays, and
one statement whose ``WITH`` clauses each insert or update one table from ``unnest`` of its
arrays writes them all: one round trip and one implicit transaction, whatever the number of
units, tables or rows. The statement text never changes, so it is prepared once per
connection. (A pipeline of one ``executemany`` per table was measured beside it:
``bench/bench_store.py``.)

One statement sees one snapshot, and PostgreSQL refuses to touch the same row twice in it
(``ON CONFLICT DO UPDATE command cannot affect row a second time``): so ``batch_args``
reduces every keyed row set to its last value per key, in unit order -- the same end state as
SQLite's row-by-row statements. For a one-time code that one unit sets and a later one deletes
(or the reverse), the later unit wins.
"""

# ruff: noqa: S608 -- the f-strings only splice fixed column lists, never input
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from switch.store.api import GUARD_ACCOUNT, GUARD_CARD, AlertRow, Changes

CARD_COLS = (
    "card_id, pan_hash, pan_first6, pan_last4, account_id, product, expiry, service_code, "
    "pan_sequence, pvki, pvv, ibm_offset, pvk, cvk, mk_ac, status, pin_tries, otp_tries, "
    "activated_at"
)
ACCOUNT_COLS = "account_id, number, kind, holder, phone, currency, balance, held, may_go_negative"
JOURNAL_COLS = (
    "txn_id, created_at, business_day, txn_type, channel, response_code, auth_code, card_id, "
    "account_id, masked_pan, amount, fee, currency, categories, acquirer_id, terminal_id, stan, "
    "transmission, rrn, merchant_id, original_txn_id, counter_account_id, route, message, "
    "refused"
)

T, F, N, B = "text", "float8", "int8", "bytea"  # text, float, number (64-bit), bytes
_JOURNAL_TYPES = (T, F, N, T, T, T, T, N, N, T, N, N, N, T, T, T, T, T, T, T, T, N, T, T, N)


class _Params:
    """Numbered placeholders in statement order: ``$n`` (asyncpg) or ``%s`` (psycopg)."""

    def __init__(self, style: str, first: int = 1, packed: bool = False) -> None:
        self.style = style
        self.n = first - 1
        self.packed = packed
        self.types: list[str] = []

    def array(self, pg_type: str) -> str:
        self.n += 1
        self.types.append(pg_type)
        mark = f"${self.n}" if self.style == "dollar" else "%s"
        if self.packed:  # one text per column (``pack_columns``), split by the server
            return f"(string_to_array({mark}::text, E'\\x1f', E'\\x1e'))[2:]::{pg_type}[]"
        return f"{mark}::{pg_type}[]"

    def unnest(self, *types: str) -> str:
        return "unnest(" + ", ".join(self.array(t) for t in types) + ")"


def commit_sql(
    style: str = "dollar", first: int = 1, extras: bool = False, packed: bool = False
) -> str:
    """The group commit statement (``style``: ``dollar`` or ``format`` placeholders;
    ``first``: the number of its first ``$n``, for its copy inside a function whose own
    arguments come first, ``postgres_onetrip``; ``extras``: also the merchant events and
    payment orders, from ``extra_args``' arrays after the others; ``packed``: each array
    comes as one text, ``pack_columns``)."""
    return _commit(_Params(style, first, packed), extras)


def commit_types(extras: bool = False) -> list[str]:
    """The element type of each of the statement's arrays, in placeholder order."""
    p = _Params("dollar")
    _commit(p, extras)
    return p.types


def _commit(p: _Params, extras: bool) -> str:
    parts = [
        f"j AS (INSERT INTO journal ({JOURNAL_COLS}) SELECT * FROM {p.unnest(*_JOURNAL_TYPES)})",
        "p AS (INSERT INTO postings (txn_id, leg, account_id, amount) "
        f"SELECT * FROM {p.unnest(T, N, N, N)})",
        "a AS (UPDATE accounts SET balance = v.balance, held = v.held, version = v.version "
        f"FROM {p.unnest(N, N, N, N)} AS v(id, balance, held, version) "
        "WHERE accounts.account_id = v.id)",
        # the internal and settlement accounts every unit credits: added, unguarded, to
        # this node's shard row (migration 0016), so no two nodes' batches lock one row
        "ad AS (INSERT INTO account_shards (account_id, shard, balance, held) "
        f"SELECT * FROM {p.unnest(N, N, N, N)} ON CONFLICT (account_id, shard) DO UPDATE "
        "SET balance = account_shards.balance + excluded.balance, "
        "held = account_shards.held + excluded.held)",
        "c AS (UPDATE cards SET status = v.status, pin_tries = v.pin, otp_tries = v.otp, "
        f"activated_at = v.at, version = v.version FROM {p.unnest(N, T, N, N, F, N)} "
        "AS v(id, status, pin, otp, at, version) WHERE cards.card_id = v.id)",
        "h AS (INSERT INTO holds (txn_id, account_id, amount, remaining, status) "
        f"SELECT * FROM {p.unnest(T, N, N, N, T)} ON CONFLICT (txn_id) DO UPDATE SET "
        "remaining = excluded.remaining, status = excluded.status)",
        f"b AS (UPDATE bills SET paid_txn = v.paid FROM {p.unnest(T, T, T)} AS v(biller, ref, "
        "paid) WHERE bills.biller_id = v.biller AND bills.reference = v.ref)",
        "o AS (INSERT INTO otps (card_id, code_hash, expires_at) "
        f"SELECT * FROM {p.unnest(N, B, F)} ON CONFLICT (card_id) DO UPDATE SET "
        "code_hash = excluded.code_hash, expires_at = excluded.expires_at)",
        f"od AS (DELETE FROM otps WHERE card_id = ANY({p.array(N)}))",
        "os AS (INSERT INTO otp_sends (card_id, merchant_id, created_at) "
        f"SELECT * FROM {p.unnest(N, T, F)})",
        # A key seen again after the idempotency window is a new request (ISO 8583 dates
        # repeat every year): it takes the slot over instead of failing.
        "i AS (INSERT INTO idempotency (key, fingerprint, txn_id, result, created_at) "
        f"SELECT * FROM {p.unnest(T, T, T, T, F)} ON CONFLICT (key) DO UPDATE SET "
        "fingerprint = excluded.fingerprint, txn_id = excluded.txn_id, "
        "result = excluded.result, created_at = excluded.created_at)",
        "al AS (INSERT INTO alerts (msisdn, text, txn_id, created_at, next_attempt_at, kind, "
        "masked_pan, amount, currency, place, available) "
        f"SELECT * FROM {p.unnest(T, T, T, F, F, T, T, N, N, T, N)})",
        "au AS (INSERT INTO operator_audit (created_at, operator_id, action, target, outcome, "
        f"detail) SELECT * FROM {p.unnest(F, T, T, T, T, T)})",
    ]
    if extras:  # created_at is also the first next_attempt_at: one array for both
        parts += [
            "me AS (INSERT INTO merchant_events (event_id, merchant_id, event_type, payment_id, "
            "body, created_at, next_attempt_at) SELECT e, m, t, p, b, c, c FROM "
            f"{p.unnest(T, T, T, T, T, F)} AS x(e, m, t, p, b, c))",
            "po AS (INSERT INTO payment_orders (txn_id, payment_id, merchant_id, order_reference, "
            f"metadata, created_at) SELECT * FROM {p.unnest(T, T, T, T, T, F)})",
        ]
    return "WITH " + ",\n".join(parts) + "\nSELECT 1"


SEP, NUL = "\x1f", "\x1e"  # between the elements of a packed column; an element that is NULL


class Unpackable(ValueError):
    """A text value holds a separator: the batch goes as typed arrays instead."""


def pack_columns(columns: Sequence[Sequence[object]], types: Sequence[str]) -> list[str | None]:
    """Each column as ONE text: SEP before every element, NUL for a NULL (the statement
    splits it back with ``string_to_array`` and casts it to the column's array type); an
    empty column is NULL.

    Why: asyncpg encodes a typed array element by element, with a few ``isinstance`` checks
    against abstract base classes for each one -- measured (``BENCH_NODES_PROFILE``) as the
    largest single cost of the switch's process on PostgreSQL: ~100 checks a withdrawal, 13%
    of its profile. Joining strings is one C call per column; the server's split and cast are
    cheap. Raises ``Unpackable`` for a text holding SEP or NUL (never in the switch's own
    values; a card holder's or a message's text could in theory)."""
    out: list[str | None] = []
    for col, pg_type in zip(columns, types, strict=True):
        if not col:
            out.append(None)
            continue
        if pg_type == "text":
            parts: list[Any] = [NUL if v is None else v for v in col]
        elif pg_type == "int8":
            parts = [NUL if v is None else str(int(v)) for v in col]  # type: ignore[call-overload]
        elif pg_type == "float8":
            parts = [NUL if v is None else repr(float(v)) for v in col]  # type: ignore[arg-type]
        else:  # bytea: PostgreSQL's hex input format
            parts = [NUL if v is None else "\\x" + bytes(v).hex() for v in col]  # type: ignore[call-overload]
        text = SEP + SEP.join(parts)
        if pg_type == "text" and (
            text.count(SEP) != len(col) or text.count(NUL) != sum(v is None for v in col)
        ):
            raise Unpackable("a text value holds a packing separator")
        out.append(text)
    return out


def _columns(rows: Sequence[Sequence[object]], width: int) -> list[list[object]]:
    """Row tuples -> one list per column (``unnest``'s arrays)."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(col) for col in zip(*rows, strict=True)]


def _alert(a: AlertRow) -> tuple[object, ...]:
    return (a.msisdn, a.text, a.txn_id, a.created_at, a.created_at, a.kind, a.masked_pan,
            a.amount, a.currency, a.place, a.available)  # fmt: skip


def batch_args(
    units: Sequence[Changes],
    versions: dict[tuple[int, int], int] | None = None,
    shard: int = 0,
) -> list[list[object]]:
    """The arrays of ``commit_sql`` for ``units`` (the batch's units that passed their
    guards), in its placeholder order; ``versions``: each written account's and card's last
    version (``postgres_guards.check``; 0 when absent, as for a bench without guards);
    ``shard``: the node's row of ``account_shards`` that takes the batch's deltas.

    One statement cannot update a row twice, so an account both snapshotted and credited by
    a delta in the batch gets one absolute write: its last snapshot plus the batch's deltas
    (the SQLite store applies the snapshots, then the deltas: the same end state)."""
    v = versions or {}
    journal = [(*c.journal[:-1], int(c.journal.refused)) for c in units if c.journal is not None]
    accounts: dict[int, tuple[int, int, int]] = {}
    cards: dict[int, tuple[int, str, int, int, float | None]] = {}
    holds: dict[str, tuple[str, int, int, int, str]] = {}
    bills: dict[tuple[str, str], tuple[str, str, str | None]] = {}
    otps: dict[int, tuple[int, bytes, float] | None] = {}  # None: deleted
    idem: dict[str, tuple[str, str, str, str, float]] = {}
    for c in units:  # later snapshots win: they include the earlier units' effects
        for a in c.accounts:
            accounts[a[0]] = a
        for k in c.cards:
            cards[k[0]] = k
        for h in c.holds:
            holds[h[0]] = h
        for b in c.bills:
            bills[(b[0], b[1])] = b
        for o in c.otps:
            otps[o[0]] = o
        for d in c.otp_deletes:
            otps[d] = None
        if c.idempotency is not None:
            idem[c.idempotency.key] = tuple(c.idempotency)  # type: ignore[assignment]
    deltas: dict[int, tuple[int, int]] = {}
    for c in units:
        for i, dbal, dheld in c.account_deltas:
            sum_bal, sum_held = deltas.get(i, (0, 0))
            deltas[i] = (sum_bal + dbal, sum_held + dheld)
    snapshots = []
    for i, bal, held in accounts.values():
        db, dh = deltas.pop(i, (0, 0))
        snapshots.append((i, bal + db, held + dh, v.get((GUARD_ACCOUNT, i), 0)))
    upserts = [o for o in otps.values() if o is not None]
    args: list[list[object]] = []
    args += _columns(journal, 25)
    args += _columns([p for c in units for p in c.postings], 4)
    args += _columns(snapshots, 4)
    args += _columns([(i, shard, db, dh) for i, (db, dh) in deltas.items()], 4)
    args += _columns([(*k, v.get((GUARD_CARD, k[0]), 0)) for k in cards.values()], 6)
    args += _columns(list(holds.values()), 5)
    args += _columns(list(bills.values()), 3)
    args += _columns(upserts, 3)
    args.append([k for k, o in otps.items() if o is None])
    args += _columns([s for c in units for s in c.otp_sends], 3)
    args += _columns(list(idem.values()), 5)
    args += _columns([_alert(a) for c in units for a in c.alerts], 11)
    args += _columns([tuple(a) for c in units for a in c.audit], 6)
    return args


MERCHANT_EVENTS_INSERT = (
    "INSERT INTO merchant_events (event_id, merchant_id, event_type, payment_id, body, "
    "created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
)
PAYMENT_ORDERS_INSERT = (
    "INSERT INTO payment_orders (txn_id, payment_id, merchant_id, order_reference, metadata, "
    "created_at) VALUES ($1, $2, $3, $4, $5, $6)"
)

#: The ``Changes`` fields the PostgreSQL commit writes (a test compares it with the
#: dataclass, so a field added to ``Changes`` without its PostgreSQL write fails loudly).
WRITTEN_FIELDS = frozenset(
    {"journal", "postings", "accounts", "cards", "holds", "bills", "otps", "otp_deletes",
     "otp_sends", "idempotency", "alerts", "on_settled", "audit", "cardbase",
     "merchant_events", "payment_orders", "guards", "account_deltas", "bill_guards",
     "idempotency_expects"}
)  # fmt: skip


Statements = list[tuple[str, Sequence[Sequence[object]]]]


def extra_args(units: Sequence[Changes]) -> list[list[object]]:
    """The arrays of ``commit_sql(extras=True)``'s merchant events and payment orders."""
    events = [e for c in units for e in c.merchant_events]
    orders = [o for c in units for o in c.payment_orders]
    return _columns(events, 6) + _columns(orders, 6)


def extra_statements(units: Sequence[Changes]) -> tuple[Statements, Statements]:
    """The rarer row sets, as ``(statement, rows)`` for ``executemany`` in the same
    transaction: (before the main statement, after it). Both empty for a plain batch of
    authorizations, which then needs no explicit transaction at all."""
    from switch.store.postgres_cardbase import cardbase_statements

    before: Statements = []
    for c in units:  # an import batch of a running switch: before the cards' snapshots
        if c.cardbase is not None:
            before += cardbase_statements(c.cardbase)
    after: Statements = []
    events = [(*e, e.created_at) for c in units for e in c.merchant_events]
    if events:
        after.append((MERCHANT_EVENTS_INSERT, events))
    orders = [tuple(o) for c in units for o in c.payment_orders]
    if orders:
        after.append((PAYMENT_ORDERS_INSERT, orders))
    return before, after
