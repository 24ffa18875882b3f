"""A throwaway PostgreSQL server for the tests: ``initdb`` in a temporary directory, started
with ``pg_ctl`` on a free 127.0.0.1 port, always stopped (and its directory removed) at the end.

Why a real server and not a mock: the PostgreSQL store's semantics (transactions, ON CONFLICT,
types, durability) are the database's own. Debian's ``postgresql`` package installs the
binaries in ``/usr/lib/postgresql/<major>/bin``, not on ``PATH``: the newest major found there
at run time is used (``SWITCH_PG_BIN`` names another directory).

Root: ``initdb`` and ``postgres`` refuse to run as root (CI runs the suite as root). Then the
server runs as the unprivileged ``nobody`` user (present on every Debian system; no account is
created): the data directory is made and owned by ``nobody``, the binaries are started with
``subprocess``'s ``user=``/``group=`` (a setuid/setgid in the child, like ``setpriv``). The
tests connect over TCP with ``trust`` authentication, which is safe only because the server
listens on 127.0.0.1 and lives for one test session.

Speed: ``fsync=off`` (the default here) keeps each commit out of the disk's flush queue; it
changes nothing a test can observe unless the *machine* crashes -- a SIGKILLed switch or even
a SIGKILLed postmaster loses nothing, the WAL is in the OS page cache. ``fsync=True`` gives a
server with PostgreSQL's durable defaults, for a test that must measure or rely on them.

Each test gets a fresh database copied from a template (``CREATE DATABASE ... TEMPLATE``):
a file copy of a few MB, tens of milliseconds.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

SUPERUSER = "postgres"
RUN_AS = "nobody"  # when the tests run as root


def pg_bin_dir() -> Path:
    """``SWITCH_PG_BIN``, else the newest ``/usr/lib/postgresql/<major>/bin`` with ``initdb``."""
    env = os.environ.get("SWITCH_PG_BIN")
    if env:
        return Path(env)
    found = [
        p / "bin"
        for p in Path("/usr/lib/postgresql").glob("*")
        if (p / "bin" / "initdb").is_file() and p.name.isdigit()
    ]
    if not found:
        raise RuntimeError(
            "PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb): "
            "run scripts/system-deps.sh"
        )
    return max(found, key=lambda p: int(p.parent.name))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    """One running server; ``url(db)`` is what ``switch run --store`` takes."""

    root: Path
    port: int
    bin_dir: Path
    as_root: bool
    _counter: int = field(default=0)
    _migrated: bool = field(default=False)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{db}"

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        user = group = None
        if self.as_root:  # setuid/setgid in the child; no supplementary groups kept
            user, group = RUN_AS, _group_of(RUN_AS)
        return subprocess.run(
            [str(self.bin_dir / argv[0]), *argv[1:]],
            capture_output=True,
            text=True,
            check=check,
            cwd=self.root,
            env={**os.environ, "LC_ALL": "C", "HOME": str(self.root)},
            user=user,
            group=group,
            extra_groups=[] if self.as_root else None,
        )

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.url(), autocommit=True)

    def create_database(self, template: str = "template0") -> str:
        """A new, empty (or ``template``'s copy) database; returns its name."""
        self._counter += 1
        name = f"t{os.getpid()}_{self._counter}"
        deadline = time.monotonic() + 10
        with self.admin() as conn:
            while True:  # a template's last client may still be disconnecting
                try:
                    conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
                    return name
                except psycopg.errors.ObjectInUse:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)

    def migrated(self) -> str:
        """A template database with every migration applied, made once: copying it spares
        each test the ~0.4 s of DDL (it holds no data, so no test's keys are in it)."""
        name = "switch_migrated"
        if not self._migrated:
            from switch.store.postgres_schema import migrate

            with self.admin() as conn:
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
            with psycopg.connect(self.url(name), autocommit=True) as conn:
                migrate(conn)
            self._migrated = True
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Immediate stop (the data is thrown away), then the directory goes."""
        if self.data.exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def _group_of(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_gid


def start(*, fsync: bool = False, timeout: float = 60.0) -> PgServer:
    """``initdb`` + ``pg_ctl start`` in a new temporary directory; stopped at interpreter exit
    at the latest (``atexit``) if the caller does not ``stop()`` it first."""
    as_root = os.geteuid() == 0
    root = Path(tempfile.mkdtemp(prefix="switch-pg-"))
    if as_root:  # the server's own user must own its directory (and reach it: /tmp is 1777)
        import pwd

        pw = pwd.getpwnam(RUN_AS)
        os.chown(root, pw.pw_uid, pw.pw_gid)
    server = PgServer(root=root, port=free_port(), bin_dir=pg_bin_dir(), as_root=as_root)
    atexit.register(server.stop)
    try:
        server._run(
            "initdb", "-D", str(server.data), "-U", SUPERUSER, "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        for attempt in range(1, 4):
            options = [
                "-c listen_addresses=127.0.0.1",
                f"-c port={server.port}",
                f"-c unix_socket_directories={root}",
                "-c max_connections=200",
                "-c shared_buffers=64MB",
            ]
            if not fsync:
                options += ["-c fsync=off", "-c full_page_writes=off"]
            started = server._run(
                "pg_ctl", "-D", str(server.data), "-l", str(root / "server.log"),
                "-o", " ".join(options), "-w", "-t", str(int(timeout)), "start", check=False,
            )  # fmt: skip
            if started.returncode == 0:
                break
            # The port was free when picked, then closed: another process (CI runs two test
            # runs side by side) may have bound it before the postmaster did. Another port.
            log = root / "server.log"
            if attempt == 3 or "could not bind" not in (log.read_text() if log.exists() else ""):
                raise subprocess.CalledProcessError(
                    started.returncode, started.args, started.stdout, started.stderr
                )
            server.port = free_port()
        _wait_accepting(server, timeout)
        _start_reaper(server)
    except BaseException as exc:
        log = root / "server.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        if isinstance(exc, subprocess.CalledProcessError):
            text = f"{exc.stdout}\n{exc.stderr}\n{text}"
        server.stop()
        raise RuntimeError(f"could not start a test PostgreSQL:\n{text}") from exc
    return server


#: Runs beside the tests in its own session: once the test process is gone -- even SIGKILLed,
#: when neither ``stop()`` nor ``atexit`` ran -- it stops the postmaster (SIGQUIT: immediate
#: shutdown; root may signal the server of ``nobody``) and removes the directory.
_REAPER = r"""
import os, shutil, signal, sys, time
owner, root = int(sys.argv[1]), sys.argv[2]
while True:
    try:
        os.kill(owner, 0)
    except ProcessLookupError:
        break
    time.sleep(1)
try:
    with open(os.path.join(root, "data", "postmaster.pid")) as fh:
        os.kill(int(fh.readline()), signal.SIGQUIT)
except (OSError, ValueError):
    pass
shutil.rmtree(root, ignore_errors=True)
"""


def _start_reaper(server: PgServer) -> None:
    subprocess.Popen(
        [sys.executable, "-c", _REAPER, str(os.getpid()), str(server.root)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _wait_accepting(server: PgServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with server.admin():
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def running(*, fsync: bool = False) -> Iterator[PgServer]:
    server = start(fsync=fsync)
    try:
        yield server
    finally:
        server.stop()


def query_state(
    state_dir: Path, sql: str, args: tuple[object, ...] = ()
) -> list[tuple[object, ...]]:
    """Rows of ``sql`` (SQLite's ``?`` spelling) from the store a test's switch used:
    ``SWITCH_STORE``'s PostgreSQL database when set (``store_backend``), else
    ``state_dir/switch.db`` -- for tests that read the store from outside the switch."""
    import sqlite3

    from switch.store import ENV_STORE, is_postgres
    from switch.store.postgres import format_placeholders

    url = os.environ.get(ENV_STORE)
    if is_postgres(url):
        with psycopg.connect(str(url)) as conn:
            return conn.execute(format_placeholders(sql), args).fetchall()
    with contextlib.closing(sqlite3.connect(state_dir / "switch.db")) as db:
        return db.execute(sql, args).fetchall()
