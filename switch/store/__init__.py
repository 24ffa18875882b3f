"""Storage: one interface, SQLite (embedded default) and PostgreSQL backends.

``open_store(spec, state_dir)`` picks the backend from what ``--store`` says: a
``postgresql://`` (or ``postgres://``) URL is a PostgreSQL database; nothing, or a file path,
is the embedded SQLite store (``state_dir/switch.db`` by default). The PostgreSQL backend is
imported only when asked for, so the default start-up does not load its drivers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from switch.store.postgres import PostgresStore
    from switch.store.sqlite import SqliteStore
    from switch.store.sqlite_operator import OperatorReads

#: Either backend (a string alias: neither module is imported at run time for it)
SwitchStore: TypeAlias = "SqliteStore | PostgresStore"

DB_NAME = "switch.db"
#: set by ``switch run --store`` for the processes it starts (the SMS worker)
ENV_STORE = "SWITCH_STORE"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def redacted(url: str) -> str:
    """``url`` without its password, for logs and messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ""
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def is_postgres(spec: str | None) -> bool:
    """True for a PostgreSQL URL (the scheme decides, in any case)."""
    return spec is not None and spec.strip().lower().startswith(POSTGRES_SCHEMES)


def check_store_spec(spec: str) -> str:
    """``--store``'s argparse type: a PostgreSQL URL with a host and a database, or a path."""
    from urllib.parse import urlsplit

    text = spec.strip()
    if not text:
        raise ValueError("--store: empty (give postgresql://user@host:port/db or a file path)")
    if "://" in text and not is_postgres(text):
        raise ValueError(
            f"--store {text.split('://')[0]}://...: unknown scheme (postgresql:// or a path)"
        )
    if is_postgres(text):
        parts = urlsplit(text)
        if not parts.hostname or parts.path in ("", "/"):
            raise ValueError(
                "--store: a PostgreSQL URL needs a host and a database: "
                "postgresql://user@host:port/db"
            )
        try:
            parts.port  # noqa: B018 -- raises on a non-numeric port
        except ValueError:
            raise ValueError("--store: the PostgreSQL URL's port is not a number") from None
    return text


def store_arg(spec: str) -> str:
    """``check_store_spec`` as an argparse ``type`` (its message, not argparse's own)."""
    import argparse

    try:
        return check_store_spec(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--store: ")) from None


def open_store(spec: str | None, state_dir: Path, *, durable: bool = True) -> SwitchStore:
    """The store ``spec`` names, else ``SWITCH_STORE``'s (what ``switch run --store`` gives
    the processes it starts; the tests run whole modules on PostgreSQL through it), else
    ``state_dir/switch.db``. Not opened yet: ``await store.open()``."""
    spec = spec or os.environ.get(ENV_STORE) or None
    if is_postgres(spec):
        from switch.store.postgres import PostgresStore

        assert spec is not None
        return PostgresStore(spec.strip(), durable=durable)
    from switch.store.sqlite import SqliteStore

    path = Path(spec) if spec else Path(state_dir) / DB_NAME
    return SqliteStore(path, durable=durable)


def operator_reads(store: SwitchStore) -> OperatorReads:
    """The operator service's read-only connection to ``store``'s database."""
    if isinstance(store.path, Path):  # SQLite: a file
        from switch.store.sqlite_operator import OperatorReads

        return OperatorReads(store.path)
    from switch.store.postgres import PostgresStore
    from switch.store.postgres_operator import PostgresOperatorReads

    assert isinstance(store, PostgresStore)
    return PostgresOperatorReads(store.url)
