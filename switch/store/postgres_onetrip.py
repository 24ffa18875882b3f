"""A guarded group commit in ONE round trip: a server-side function (PL/pgSQL) that locks,
checks the guards and writes the whole batch, or writes nothing and says what it found.

Why: the guarded commit of ``postgres.py`` is BEGIN, lock the keys, lock the rows and read
their versions, write, COMMIT: four or five round trips, with the rows locked from the third
to the last while the client (one busy event loop) checks the guards in between. Measured
(``bench_nodes``, docs/architecture.md §7): sessions "idle in transaction" holding locks, and
a commit cycle that decides how fast one process can go. The function does the same steps
inside the server, so a batch holds its row locks for the function's run and its WAL flush,
and costs the client one prepared statement.

How it stays the same rule (``postgres_guards``): the client first *speculates* that every
unit passes (``speculate``: runs ``postgres_guards.check`` against the versions the batch's
first guard of each row expects, so the version chain inside the batch, the stamps of rows
written unguarded and the idempotency slots the batch fills itself are checked here). If so,
the function is called with each row's first expected version and each key's expectation: it
takes the keys' advisory locks, locks the accounts then the cards ``FOR UPDATE`` in key
order (the slow path's order: no deadlock between the two), and compares (each statement of
a PL/pgSQL function in READ COMMITTED reads a new snapshot, so the comparison sees every
commit made before the locks were granted, as the slow path's separate statements do). All
equal: it runs the batch's ``commit_sql`` statement and returns one row ``(-1, ...)``.
Anything else: it writes nothing and returns the versions and idempotency slots it found;
the caller runs ``postgres_guards.check`` on them, exactly as the slow path would, and
offers the units that pass to a second call (two round trips for a batch with a conflict; if
that one is refused too, the slow path decides). Batches the function does not take (bills
guarded, a key twice, import rows: rare, and kept out so the function stays within
PostgreSQL's 100 arguments: it takes 99) take the slow path directly.

The function is named after a hash of its text (``FUNCTION_NAME``) and created at open if
absent, under the migration lock: a node running other code creates and calls its own,
and no migration file has to repeat ``commit_sql``.
"""

# ruff: noqa: S608 -- the f-strings only splice the function's name and fixed type lists
from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence

import psycopg

from switch.store.api import GUARD_ACCOUNT, GUARD_CARD, Changes
from switch.store.postgres_guards import Touched, Versions, check
from switch.store.postgres_schema import MIGRATION_LOCK
from switch.store.postgres_sql import commit_sql, commit_types

#: the function's own arguments before the batch's arrays: keys, their ``since`` and
#: expected txn id; accounts to lock and the version each must have (NULL: lock only);
#: cards likewise
log = logging.getLogger("switch.store")

_GUARD_TYPES = ("text", "float8", "text", "int8", "int8", "int8", "int8")
#: the batch's arrays, each passed packed as one text (``postgres_sql.pack_columns``)
BATCH_TYPES = commit_types(extras=True)
_ARG_TYPES = [f"{t}[]" for t in _GUARD_TYPES] + ["text"] * len(BATCH_TYPES)  # 99 (max 100)

_BODY = """
DECLARE
  done int;
BEGIN
  PERFORM pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtextextended(k, 13) AS h
    FROM unnest($1) AS k ORDER BY 1) AS s;
  PERFORM 1 FROM accounts WHERE account_id = ANY($4) ORDER BY account_id FOR UPDATE;
  PERFORM 1 FROM cards WHERE card_id = ANY($6) ORDER BY card_id FOR UPDATE;
  IF EXISTS (SELECT 1 FROM unnest($4, $5) AS e(id, v) LEFT JOIN accounts a
             ON a.account_id = e.id WHERE e.v IS NOT NULL AND a.version IS DISTINCT FROM e.v)
     OR EXISTS (SELECT 1 FROM unnest($6, $7) AS e(id, v) LEFT JOIN cards c
             ON c.card_id = e.id WHERE e.v IS NOT NULL AND c.version IS DISTINCT FROM e.v)
     OR EXISTS (SELECT 1 FROM unnest($1, $2, $3) AS e(k, since, txn) JOIN idempotency i
             ON i.key = e.k WHERE i.created_at >= e.since AND i.txn_id IS DISTINCT FROM e.txn)
  THEN  -- written nothing: what the guards found, for the caller's second try
    RETURN QUERY SELECT 0, account_id, version, NULL::text, NULL::text, NULL::float8
      FROM accounts WHERE account_id = ANY($4)
      UNION ALL SELECT 1, card_id, version, NULL, NULL, NULL FROM cards WHERE card_id = ANY($6)
      UNION ALL SELECT 2, 0::int8, 0::int8, i.key, i.txn_id, i.created_at FROM idempotency i
      WHERE i.key = ANY($1);
    RETURN;
  END IF;
  {write} INTO done;
  RETURN QUERY SELECT -1, 0::int8, 0::int8, NULL::text, NULL::text, NULL::float8;
END
"""


def _function_text(name: str) -> str:
    args = ", ".join(_ARG_TYPES)
    write = commit_sql("dollar", first=len(_GUARD_TYPES) + 1, extras=True, packed=True)
    body = _BODY.replace("{write}", write)
    return (
        f"CREATE FUNCTION {name}({args}) RETURNS TABLE (r_kind int, r_id int8, r_version int8, "
        f"r_key text, r_txn text, r_at float8) LANGUAGE plpgsql AS $fn${body}$fn$"
    )


FUNCTION_NAME = "switch_commit_" + hashlib.sha256(_function_text("f").encode()).hexdigest()[:12]
#: the call (prepared once per connection by asyncpg's statement cache)
CALL_SQL = (
    f"SELECT * FROM {FUNCTION_NAME}("
    + ", ".join(f"${i}::{t}" for i, t in enumerate(_ARG_TYPES, start=1))
    + ")"
)


def ensure_function(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    """Create the function if this database does not have it (``conn``: autocommit);
    False if it cannot be (no right to create functions): the store then writes every
    guarded batch the slow way, correct and slower."""
    try:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            found = conn.execute("SELECT 1 FROM pg_proc WHERE proname = %s", (FUNCTION_NAME,))
            if found.fetchone() is None:
                conn.execute(_function_text(FUNCTION_NAME).encode())  # bytes: no % parsing
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    except psycopg.Error as exc:
        log.warning("one-call group commit unavailable (%s): guarded batches take 4 trips", exc)
        return False
    return True


def speculate(
    units: Sequence[Changes], touched: Touched, stamp: Callable[[], int]
) -> tuple[Versions, list[list[object]]] | None:
    """If the function can take the batch and every unit passes its guards provided each
    row still has the version the batch first expects: ``(view, guard arguments)`` --
    ``view`` each row's last version, for ``batch_args`` -- else None (the slow path)."""
    keys: set[str] = set()
    expects: list[tuple[str, float, str | None]] = []
    needs: Versions = {}
    for c in units:
        if c.bill_guards or c.cardbase is not None:
            return None
        idem = c.idempotency
        if idem is not None:
            if idem.key in keys:
                return None  # the slow path's slots follow a key through the batch
            keys.add(idem.key)
            if c.idempotency_expects is not None:
                exp = c.idempotency_expects
                expects.append((idem.key, exp.since, exp.txn_id))
        for kind, row_id, expected, _ in c.guards:
            needs.setdefault((kind, row_id), expected)
    view = dict(needs)
    if len(check(units, view, {}, {}, stamp)) != len(units):
        return None
    args: list[list[object]] = [
        [k for k, _, _ in expects],
        [s for _, s, _ in expects],
        [t for _, _, t in expects],
        list(touched.accounts),
        [needs.get((GUARD_ACCOUNT, i)) for i in touched.accounts],
        list(touched.cards),
        [needs.get((GUARD_CARD, i)) for i in touched.cards],
    ]
    return view, args
