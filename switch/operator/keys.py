"""Operator credentials: ``state_dir/operators.json``, one salted hash per operator key.

Why a file beside the store rather than a table: ``switch operator add`` must work whether or
not a switch is running on the state directory (the store is locked by it), and the running
switch must see a new operator at once. The file is small, written atomically (temporary file,
fsync, rename) under its own lock, mode 0600 like everything in the state directory; the
switch re-reads it when it changes (by size, mtime and inode), so no restart is needed.

A key is 32 random bytes (URL-safe base64): a salted HMAC-SHA256 is enough to keep it, and
the check is a constant-time comparison whatever the operator id (an unknown id is compared
against a dummy hash, so timing does not tell which ids exist). The key is printed once, by
``add``; nothing in the switch can show it again.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from switch.store.files import FILE_MODE

FILE_NAME = "operators.json"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}", re.ASCII)
_DUMMY_SALT = bytes(16)
_DUMMY_HASH = bytes(32)


class OperatorKeyError(ValueError):
    """A bad operator id, a duplicate or unknown one, or an unreadable operators file."""


@dataclass(frozen=True, slots=True)
class OperatorEntry:
    operator_id: str
    salt: bytes
    key_hash: bytes
    created_at: float


def key_hash(salt: bytes, key: str) -> bytes:
    return hmac.new(salt, key.encode("utf-8"), hashlib.sha256).digest()


def valid_operator_id(operator_id: str) -> bool:
    return _ID.fullmatch(operator_id) is not None


def operators_path(state_dir: Path) -> Path:
    return Path(state_dir) / FILE_NAME


def _parse(text: str, path: Path) -> dict[str, OperatorEntry]:
    try:
        doc = json.loads(text)
        out: dict[str, OperatorEntry] = {}
        for row in doc["operators"]:
            e = OperatorEntry(
                str(row["id"]),
                bytes.fromhex(row["salt"]),
                bytes.fromhex(row["hash"]),
                float(row["created_at"]),
            )
            out[e.operator_id] = e
        return out
    except (ValueError, KeyError, TypeError) as exc:
        raise OperatorKeyError(f"{path}: not an operators file ({exc})") from None


def read_operators(path: Path) -> dict[str, OperatorEntry]:
    """The operators in ``path`` (none if it does not exist)."""
    try:
        text = Path(path).read_text("utf-8")
    except FileNotFoundError:
        return {}
    return _parse(text, path)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write(path: Path, entries: dict[str, OperatorEntry]) -> None:
    doc = {
        "version": 1,
        "operators": [
            {"id": e.operator_id, "salt": e.salt.hex(), "hash": e.key_hash.hex(),
             "created_at": e.created_at}
            for e in entries.values()
        ],
    }  # fmt: skip
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)  # the rename itself is durable
    finally:
        os.close(dfd)


def add_operator(path: Path, operator_id: str, *, now: float | None = None) -> str:
    """Register ``operator_id`` with a fresh key and return the key (shown once, never kept)."""
    if not valid_operator_id(operator_id):
        raise OperatorKeyError(
            "name: 1-64 characters, letters, digits and . _ @ - (starting with a letter or digit)"
        )
    path = Path(path)
    if not path.parent.is_dir():
        raise OperatorKeyError(f"state_dir: {path.parent} does not exist (run `switch run` once)")
    with _locked(path):
        entries = read_operators(path)
        if operator_id in entries:
            raise OperatorKeyError(f"name: operator {operator_id!r} already exists")
        key = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        created = time.time() if now is None else now
        entries[operator_id] = OperatorEntry(operator_id, salt, key_hash(salt, key), created)
        _write(path, entries)
    return key


def remove_operator(path: Path, operator_id: str) -> None:
    """Revoke an operator's key (the running switch refuses it from its next call)."""
    path = Path(path)
    with _locked(path):
        entries = read_operators(path)
        if entries.pop(operator_id, None) is None:
            raise OperatorKeyError(f"name: no operator {operator_id!r}")
        _write(path, entries)


class OperatorKeys:
    """The running switch's view of ``operators.json``, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        self._entries: dict[str, OperatorEntry] = {}
        self._lock = threading.Lock()

    def _current(self) -> dict[str, OperatorEntry]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return {}
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._entries = read_operators(self.path)
                except OperatorKeyError:
                    self._entries = {}  # a damaged file lets nobody in, rather than anyone
                self._stamp = stamp
            return self._entries

    def check(self, operator_id: str, key: str) -> bool:
        """True for a registered operator with this key; constant time in the key, and the
        same work for an unknown id."""
        entry = self._current().get(operator_id)
        salt, expected = (
            (_DUMMY_SALT, _DUMMY_HASH) if entry is None else (entry.salt, entry.key_hash)
        )
        ok = hmac.compare_digest(key_hash(salt, key), expected)
        return ok and entry is not None
