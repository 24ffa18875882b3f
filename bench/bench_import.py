"""Card base import rate: ``switch import`` end to end vs a plain ``executemany`` of the rows.

Generates ``BENCH_IMPORT_CARDS`` cards (default 100,000) on as many CCP accounts, as a card
management system's CSV export, then imports both files into a fresh state directory with
the real command (batches of 10,000: the defaults). The baseline inserts the same card rows,
already built (hash, keys, everything), with one ``executemany`` per 10,000 rows into a
fresh store, on a connection with the import's settings: what the database alone costs, so
the difference is the import's own work (reading, checking, hashing, look-ups, progress).
A third line runs the importer with its two stages (check batch N+1 / write batch N) in
turn in one process, to show what the checking child process buys (``switch.cardbase
.checker``); CPU seconds (this process and its children) are printed beside wall seconds,
since the machine is shared.

The issue's goal is 16 M cards in under 15 minutes, about 18,000 cards/s; the projection
printed is a straight line from this size (the UNIQUE index on the PAN hash grows with the
table, so the real 16 M figure is lower: ``bench_scale`` measures that size).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import io
import os
import resource
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import switch_native

from switch.cardbase import cli as cardbase_cli
from switch.cardbase.importer import Importer, IssuerKeys
from switch.config import load_config
from switch.core import demo
from switch.core.domain import luhn_complete
from switch.core.service import SwitchCore
from switch.hsm.client import KeyType
from switch.hsm.inprocess import InProcessHsm
from switch.hsm.lmk import Lmk
from switch.store.sqlite_cardbase import CARD_INSERT, SqliteCardBase

N = int(os.environ.get("BENCH_IMPORT_CARDS", "100000"))
BATCH = int(os.environ.get("BENCH_IMPORT_BATCH", "10000"))
GOAL_RATE = 16_000_000 / (15 * 60)
IMPORT_PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "wal_autocheckpoint=250000",
                  "cache_size=-1048576")  # fmt: skip  # as switch.store.sqlite_cardbase


def _fresh_state(path: Path) -> tuple[str, str, str]:
    """A state directory with no demo data and the issuer keys formed under its LMK."""

    async def go() -> tuple[str, str, str]:
        await (await SwitchCore.open(path, seed_demo=False, durable=False)).close()
        hsm = InProcessHsm(Lmk.load(path / "lmk.json"), authorised=True)
        out = []
        for kt, clear in ((KeyType.PVK, demo.PVK_CLEAR), (KeyType.CVK, demo.CVK_CLEAR),
                          (KeyType.MK_AC, demo.MK_AC_CLEAR)):  # fmt: skip
            out.append((await hsm.form_key_from_clear_components(kt, [clear])).key_under_lmk)
        return out[0], out[1], out[2]

    return asyncio.run(go())


def _files(tmp: Path) -> tuple[Path, Path]:
    pvk = bytes.fromhex(demo.PVK_CLEAR)
    accounts, cards = tmp / "accounts.csv", tmp / "cards.csv"
    with accounts.open("w") as a, cards.open("w") as c:
        a.write("account,currency,balance,holder,phone\n")
        c.write("pan,expiry,service_code,product,account,holder,phone,pvki,pvv,status\n")
        for i in range(1, N + 1):
            number = f"{4_000_000_000 + i:010d}-{i % 100:02d}"
            pan = luhn_complete(f"628058{i:09d}")
            pvv = switch_native.pvv_generate(pvk, pan, 1, f"{i % 10_000:04d}")
            a.write(f"{number},012,{i * 100},Titulaire {i},+21355{i:07d}\n")
            c.write(f"{pan},3012,201,EDAHABIA_CLASSIC,{number},TITULAIRE {i},,1,{pvv},active\n")
    return accounts, cards


def _cpu() -> float:
    """CPU seconds of this process and its waited-for children (the import's reader)."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


CPU: dict[str, float] = {}  # CPU seconds of each timed import, by kind


def _timed_import(*argv: str | Path) -> float:
    sink = io.StringIO()
    c0 = _cpu()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        parser = argparse.ArgumentParser(prog="switch import")
        cardbase_cli.add_arguments(parser)  # only this command's module: as `switch import`
        rc = cardbase_cli.main(parser.parse_args([*map(str, argv)]))
    elapsed = time.perf_counter() - t0
    CPU[str(argv[0])] = _cpu() - c0
    if rc != 0:
        raise RuntimeError(f"import failed ({rc}): {sink.getvalue()[-500:]}")
    return elapsed


def _one_thread(state: Path, cards: Path, keys: tuple[str, str, str]) -> float:
    """The importer with ``overlap=False``: each batch checked then written, in turn."""
    db = SqliteCardBase(state / "switch.db")
    pan_key = bytes.fromhex((state / "pan.key").read_text().strip())
    importer = Importer(
        db, kind="cards", update=False, config=load_config(), pan_key=pan_key,
        keys=IssuerKeys(*keys), batch_size=BATCH, overlap=False,
    )  # fmt: skip
    t0 = time.perf_counter()
    out = importer.run(cards, "csv", on_reject=lambda r: None)
    elapsed = time.perf_counter() - t0
    db.close()
    if out.loaded != N:
        raise RuntimeError(f"one-thread import loaded {out.loaded} of {N}")
    return elapsed


def _baseline(state: Path, keys: tuple[str, str, str]) -> float:
    """The same card rows, built beforehand, through ``executemany`` in 10,000-row commits."""
    pan_key = bytes.fromhex((state / "pan.key").read_text().strip())
    conn = sqlite3.connect(state / "switch.db", isolation_level=None)
    for pragma in IMPORT_PRAGMAS:  # the import connection's settings: only the work differs
        conn.execute(f"PRAGMA {pragma}")
    conn.execute("BEGIN IMMEDIATE")  # the accounts only make the cards' rows valid: untimed
    conn.executemany(
        "INSERT INTO accounts (account_id, number, kind, holder, phone, currency, balance) "
        "VALUES (?, ?, 'ccp', '', '', 12, 0)",
        [(100 + i, f"{4_000_000_000 + i:010d}-{i % 100:02d}") for i in range(1, N + 1)],
    )
    conn.execute("COMMIT")
    rows = []
    for i in range(1, N + 1):
        pan = luhn_complete(f"628058{i:09d}")
        h = hmac.new(pan_key, pan.encode(), hashlib.sha256).digest()
        rows.append((i, h, pan[:6], pan[-4:], 100 + i, "EDAHABIA_CLASSIC", "3012", "201", "00",
                     1, "1234", "", *keys, "active", ""))  # fmt: skip
    t0 = time.perf_counter()
    for j in range(0, N, BATCH):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(CARD_INSERT, rows[j : j + BATCH])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench_import") as d:
        tmp = Path(d)
        state = tmp / "state"
        keys = _fresh_state(state)
        (tmp / "keys.toml").write_text(
            f'pvk = "{keys[0]}"\ncvk = "{keys[1]}"\nmk_ac = "{keys[2]}"\n'
        )
        accounts, cards = _files(tmp)
        batch = ("--batch-size", str(BATCH))
        t_accounts = _timed_import("accounts", accounts, "--state-dir", state, *batch)
        one_thread = tmp / "one-thread"
        shutil.copytree(state, one_thread)
        t_seq = _one_thread(one_thread, cards, keys)
        shutil.rmtree(one_thread)
        t_cards = _timed_import(
            "cards", cards, "--state-dir", state, "--keys", tmp / "keys.toml", *batch
        )
        size = (state / "switch.db").stat().st_size
        base_state = tmp / "baseline"
        base_keys = _fresh_state(base_state)
        t_base = _baseline(base_state, base_keys)
    rate = N / t_cards
    print(f"bench_import: {N:,} cards on {N:,} CCP accounts, CSV, batches of {BATCH:,}, WAL "
          "synchronous=NORMAL")  # fmt: skip
    print(f"  switch import accounts   {N / t_accounts:>10,.0f} accounts/s  ({t_accounts:.1f} s, "
          f"{CPU['accounts']:.1f} s CPU)")  # fmt: skip
    print(f"  switch import cards      {rate:>10,.0f} cards/s     ({t_cards:.1f} s, "
          f"{CPU['cards']:.1f} s CPU in 2 processes, file hash and key check "
          "included)")  # fmt: skip
    print(f"  the same, in one process {N / t_seq:>10,.0f} cards/s     ({t_seq:.1f} s, checks "
          "and writes in turn)")  # fmt: skip
    print(f"  executemany, rows built  {N / t_base:>10,.0f} cards/s     ({t_base:.1f} s, the "
          "database alone)")  # fmt: skip
    print(f"  store after import       {size / 2**20:>10.1f} MiB")
    print(f"  16 M cards at this rate  {16_000_000 / rate / 60:>10.1f} min  (goal: 15 min, "
          f"{GOAL_RATE:,.0f} cards/s)")  # fmt: skip


if __name__ == "__main__":
    main()
