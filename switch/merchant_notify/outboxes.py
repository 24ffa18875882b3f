"""Which merchant outbox a process opens: the store ``switch run --store`` named, else the
state directory's SQLite database (the rule of ``switch.store.open_store``)."""

from __future__ import annotations

import os
from pathlib import Path

from switch.merchant_notify.sql_outbox import SqlMerchantOutbox
from switch.store import DB_NAME, ENV_STORE, is_postgres


def open_outbox(
    state_dir: Path, spec: str | None = None, *, durable: bool = True
) -> SqlMerchantOutbox:
    """``spec`` (a ``postgresql://`` URL or a SQLite file), else ``SWITCH_STORE``, else
    ``state_dir/switch.db``; ``StoreError`` naming it if it cannot be used."""
    spec = spec or os.environ.get(ENV_STORE) or None
    if is_postgres(spec):
        from switch.merchant_notify.pg_outbox import PostgresMerchantOutbox

        assert spec is not None
        return PostgresMerchantOutbox(spec.strip(), durable=durable)
    from switch.merchant_notify.sqlite_outbox import SqliteMerchantOutbox

    return SqliteMerchantOutbox(Path(spec) if spec else Path(state_dir) / DB_NAME, durable=durable)
