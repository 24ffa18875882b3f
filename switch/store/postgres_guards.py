"""Version guards of a group commit on PostgreSQL (several nodes over one database).

The rule is the SQLite store's (``Changes`` docstring, docs/architecture.md §7): units are
taken in batch order; one whose guards all hold -- each account and card it was decided on
still at the version it read (or at the version an earlier written unit of the batch set),
its idempotency slot free or expired or its own, each bill's paid mark the expected one -- is
written and moves its rows to their new versions; one whose guard fails is left out whole and
its caller gets ``Conflict``. Rows written without a guard get a fresh stamp.

What PostgreSQL adds is the locking that makes the check and the write one step against the
other nodes: inside the batch's transaction, the idempotency keys are taken as advisory locks
(a key with no row yet has nothing to lock), then every account (guarded or snapshotted),
card and bill the batch touches is read ``FOR UPDATE`` in key order --
so two nodes lock in the same order and cannot deadlock on one another -- and only then are
the versions compared and the rows written. READ COMMITTED re-reads a row that another node
changed while this one waited for its lock, so the comparison sees the latest version.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from switch.store.api import GUARD_ACCOUNT, GUARD_CARD, Changes

#: (guard kind, row id) -> version
Versions = dict[tuple[int, int], int]

LOCK_KEYS_SQL = (
    "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtextextended(k, 13) AS h "
    "FROM unnest($1::text[]) AS k ORDER BY 1) AS s"
)
#: Locks the accounts and cards and reads their versions, and reads the idempotency slots
#: (whose keys the previous statement locked, so this statement's snapshot already sees every
#: answer given for them), in one round trip. Rows: (0 = account | 1 = card, id, version,
#: NULL, NULL, NULL) and (2, 0, 0, key, txn id, created_at) for each slot found.
LOCK_ROWS_SQL = (
    "WITH a AS (SELECT 0 AS kind, account_id AS id, version FROM accounts "
    "WHERE account_id = ANY($1::int8[]) ORDER BY account_id FOR UPDATE), "
    "c AS (SELECT 1 AS kind, card_id AS id, version FROM cards "
    "WHERE card_id = ANY($2::int8[]) ORDER BY card_id FOR UPDATE) "
    "SELECT kind, id, version, NULL::text AS key, NULL::text AS txn_id, NULL::float8 AS at "
    "FROM a UNION ALL SELECT kind, id, version, NULL, NULL, NULL FROM c "
    "UNION ALL SELECT 2, 0, 0, key, txn_id, created_at FROM idempotency "
    "WHERE key = ANY($3::text[])"
)
BILLS_SQL = (
    "SELECT biller_id, reference, paid_txn FROM bills WHERE (biller_id, reference) IN "
    "(SELECT * FROM unnest($1::text[], $2::text[])) ORDER BY biller_id, reference FOR UPDATE"
)


class Touched:
    """What a batch reads and locks before its guards are checked."""

    def __init__(self, units: Sequence[Changes]) -> None:
        accounts: set[int] = set()
        cards: set[int] = set()
        keys: set[str] = set()
        bills: set[tuple[str, str]] = set()
        for c in units:
            for kind, row_id, _, _ in c.guards:
                (accounts if kind == GUARD_ACCOUNT else cards).add(row_id)
            accounts.update(a[0] for a in c.accounts)
            # account_deltas go to this node's shard rows (0016): nothing to lock or check
            cards.update(k[0] for k in c.cards)
            if c.idempotency_expects is not None and c.idempotency is not None:
                keys.add(c.idempotency.key)
            bills.update((b[0], b[1]) for b in c.bill_guards)
        self.accounts = sorted(accounts)
        self.cards = sorted(cards)
        self.keys = sorted(keys)
        self.bills = sorted(bills)

    @property
    def guarded(self) -> bool:
        """False for a batch with nothing to lock (e.g. journal rows of refusals only)."""
        return bool(self.accounts or self.cards or self.keys or self.bills)


def check(
    units: Sequence[Changes],
    view: Versions,
    slots: dict[str, tuple[str, float]],
    paid: dict[tuple[str, str], str | None],
    stamp: Callable[[], int],
) -> list[Changes]:
    """The units that may be written, in order; ``view`` ends with each row's last version."""
    keys = set(slots)
    written: list[Changes] = []
    for c in units:
        if not _holds(c, view, slots, paid):
            continue
        written.append(c)
        for kind, row_id, _, new in c.guards:
            view[kind, row_id] = new
        guarded = {(kind, row_id) for kind, row_id, _, _ in c.guards}
        for a in c.accounts:  # written without a guard: a version nobody expects
            if (GUARD_ACCOUNT, a[0]) not in guarded:
                view[GUARD_ACCOUNT, a[0]] = stamp()
        for k in c.cards:
            if (GUARD_CARD, k[0]) not in guarded:
                view[GUARD_CARD, k[0]] = stamp()
        idem = c.idempotency
        if idem is not None and (idem.key in keys or c.idempotency_expects is not None):
            slots[idem.key] = (idem.txn_id, idem.created_at)
        for biller, ref, mark in c.bills:
            paid[biller, ref] = mark
    return written


def _holds(
    c: Changes,
    view: Versions,
    slots: dict[str, tuple[str, float]],
    paid: dict[tuple[str, str], str | None],
) -> bool:
    seen: Versions = {}  # the unit's own chain (a row it writes twice)
    for kind, row_id, expected, new in c.guards:
        current = seen.get((kind, row_id))
        if current is None:
            current = view.get((kind, row_id))
        if current != expected:
            return False
        seen[kind, row_id] = new
    expects = c.idempotency_expects
    if expects is not None and c.idempotency is not None:
        slot = slots.get(c.idempotency.key)
        if slot is not None and slot[1] >= expects.since and slot[0] != expects.txn_id:
            return False  # another node answered this key
    return all(paid.get((biller, ref)) == mark for biller, ref, mark in c.bill_guards)
