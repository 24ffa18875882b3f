"""Modes of the state directory: the directory 0700, every file in it 0600.

Why: the state directory holds the LMK, the switch secret (``pan.key``), the store (cards,
balances, the SMS outbox) and ``sms.log``. Any other local user reading one of them learns
what only the switch should know, so nothing in it is readable beyond its owner, whatever the
process umask is. Files are created with an explicit mode (``os.open(..., 0o600)``), never
left to the umask; SQLite creates a database's ``-wal``, ``-shm`` and ``-journal`` with the
database file's own mode, so creating ``switch.db`` 0600 *before* SQLite opens it covers them.

A state directory made by an older release (0755 directory, 0644 files) is tightened when
the switch opens it, with one warning line saying what changed.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")

log = logging.getLogger("switch.store.files")


def secure_state_dir(state_dir: Path) -> list[str]:
    """Create ``state_dir`` 0700, or bring it and every file under it to 0700/0600.

    Returns what was tightened (``"name 0644 -> 0600"``); logs it once, as one warning. Files
    of another owner are left alone (``chmod`` would fail; the operator must look at them).
    """
    state_dir = Path(state_dir)
    if not state_dir.exists():
        state_dir.mkdir(mode=DIR_MODE, parents=True)
        os.chmod(state_dir, DIR_MODE)  # mkdir's mode went through the umask
        return []
    changed: list[str] = []
    _tighten(state_dir.resolve(), DIR_MODE, ".", changed)  # the directory a symlink names
    for root, dirs, files in os.walk(state_dir):
        for name in dirs:
            path = Path(root) / name
            if not path.is_symlink():
                _tighten(path, DIR_MODE, str(path.relative_to(state_dir)), changed)
        for name in files:
            path = Path(root) / name
            if not path.is_symlink():
                _tighten(path, FILE_MODE, str(path.relative_to(state_dir)), changed)
    if changed:
        what = ", ".join(changed)
        log.warning("state directory %s was open to other users; tightened: %s", state_dir, what)
    return changed


def create_private_file(path: Path) -> None:
    """Make sure ``path`` exists with mode 0600 (created so, or tightened if looser)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & ~FILE_MODE:
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def prepare_sqlite_file(db_path: Path) -> None:
    """Before SQLite opens ``db_path``: the database 0600 (its side files then inherit that
    mode), and side files left by an earlier crash tightened too."""
    db_path = Path(db_path)
    db_path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    create_private_file(db_path)
    for suffix in SQLITE_SIDE_FILES:
        side = db_path.with_name(db_path.name + suffix)
        try:
            mode = stat.S_IMODE(side.lstat().st_mode)
        except FileNotFoundError:
            continue
        if mode & ~FILE_MODE and not side.is_symlink():
            os.chmod(side, FILE_MODE)


def open_private_append(path: Path) -> int:
    """A file descriptor appending to ``path``, created 0600 (tightened if it was looser)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & ~FILE_MODE:
            os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _tighten(path: Path, wanted: int, name: str, changed: list[str]) -> None:
    try:
        st = path.lstat()
    except FileNotFoundError:  # removed meanwhile (a lock file, an SQLite side file)
        return
    mode = stat.S_IMODE(st.st_mode)
    if not mode & ~wanted:
        return
    if st.st_uid != os.geteuid():
        log.warning("%s is mode %04o and not ours: left as it is", path, mode)
        return
    os.chmod(path, mode & wanted)
    changed.append(f"{name} {mode:04o} -> {mode & wanted:04o}")
