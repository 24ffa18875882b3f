"""A running switch's import batch (``Changes.cardbase``) on PostgreSQL.

The rows come in the layouts ``switch.cardbase`` builds for ``sqlite_cardbase``'s statements
(``CARD_INSERT``, ``ACCOUNT_INSERT``, ``CARD_UPDATE``, ``ACCOUNT_UPDATE``, ``PROGRESS_UPSERT``);
these are the same statements with PostgreSQL's ``$n`` placeholders, and the wrong-PIN reset
flag compared to 0 (PostgreSQL's ``CASE WHEN`` takes a boolean, the row carries 0/1). They run
inside the group commit's transaction, before the batch's own snapshots (as in SQLite):
accounts first (a new card may name a new account), then cards, then the file's progress.
"""

from __future__ import annotations

from collections.abc import Sequence

from switch.store.api import CardBaseRows

CARD_INSERT = (
    "INSERT INTO cards (card_id, pan_hash, pan_first6, pan_last4, account_id, product, expiry, "
    "service_code, pan_sequence, pvki, pvv, ibm_offset, pvk, cvk, mk_ac, status, holder) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
)
ACCOUNT_INSERT = (
    "INSERT INTO accounts (account_id, number, kind, holder, phone, currency, balance, held, "
    "may_go_negative) VALUES ($1, $2, 'ccp', $3, $4, $5, $6, 0, 0)"
)
CARD_UPDATE = (
    "UPDATE cards SET status = $1, expiry = $2, holder = $3, service_code = $4, "
    "pan_sequence = $5, pvki = $6, pvv = $7, ibm_offset = $8, "
    "pin_tries = CASE WHEN $9::bigint <> 0 THEN 0 ELSE pin_tries END WHERE card_id = $10"
)
ACCOUNT_UPDATE = "UPDATE accounts SET holder = $1, phone = $2 WHERE account_id = $3"
PROGRESS_UPSERT = (
    "INSERT INTO import_progress (kind, file_sha256, file_name, next_offset, next_line, "
    "loaded, updated, rejected, done, started_at, updated_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (kind, file_sha256) "
    "DO UPDATE SET next_offset = excluded.next_offset, next_line = excluded.next_line, "
    "loaded = excluded.loaded, updated = excluded.updated, rejected = excluded.rejected, "
    "done = excluded.done, updated_at = excluded.updated_at"
)


def cardbase_statements(
    rows: CardBaseRows,
) -> list[tuple[str, Sequence[Sequence[object]]]]:
    """``(statement, rows)`` pairs for ``executemany``, in the order they must run."""
    out: list[tuple[str, Sequence[Sequence[object]]]] = []
    for sql, batch in (
        (ACCOUNT_INSERT, rows.new_accounts),
        (ACCOUNT_UPDATE, rows.account_updates),
        (CARD_INSERT, rows.new_cards),
        (CARD_UPDATE, rows.card_updates),
    ):
        if batch:
            out.append((sql, batch))
    if rows.progress is not None:
        out.append((PROGRESS_UPSERT, [rows.progress]))
    return out
