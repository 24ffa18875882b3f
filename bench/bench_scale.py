"""A card base of millions (issue 12 §2): import, store size, start-up, cold and warm cache.

For each size in ``SWITCH_BENCH_SCALE_CARDS`` (comma-separated, default 100000; the issue's
figures are for 1000000 and 16000000), on a fresh demo state directory (its BIN route, ATMs
and issuer keys):

1. writes a card management system's export -- N CCP accounts and N cards (CSV, one PVV per
   card under the demo PVK, PIN 1234) -- untimed;
2. imports both with the real command (``switch import accounts`` then ``switch import
   cards``, subprocesses, default batches, keys checked): cards/s;
3. measures the store's size on disk;
4. starts ``switch run`` (subprocess, durable store, in-process HSM, default ``--card-cache``
   unless ``SWITCH_BENCH_SCALE_CACHE``) and times it from the exec to the first HTTP 200 of
   ``/readyz``; reads its RSS there;
5. sends ``SWITCH_BENCH_SCALE_SAMPLE`` (default 20,000) PIN-verified ATM withdrawals (0200,
   ascii87) over as many *distinct random* cards, pipelined (``CONNS`` x ``DEPTH`` in
   flight): the cold pass, each card's first use since the start (card and account read from
   SQLite); then the same cards again in another order: the warm pass, all in the cache.
   Approved/s and p99 latency of each, and the cold/warm ratio.

``SWITCH_BENCH_SCALE_KEEP`` (a directory) keeps each size's imported state there (``nN``)
and, when it is already there, reuses it instead of writing and importing again (the import
lines are then left out): the cold and warm passes run on a fresh copy of it each time, so
a 1 M-card run takes a minute, not three, and runs stay comparable (the same cards). A
migration added since the state was kept is applied by each copy's first start, so it counts
in "ready" then.

Goals on the 2-core machine: 16 M cards imported in under 15 minutes; ready in under 10 s
with RSS under 2 GiB; cold at least 70 % of warm. The state lives under ``TMPDIR``: 16 M
cards need ~15 GB there (CSV files and store); check ``df -h`` first.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import switch_native

from bench.bench_iso import _cpu_seconds, _free_port, _percentile, drive, tally
from switch.core import demo
from switch.core.domain import luhn_complete
from switch.core.service import SwitchCore
from switch.iso8583.codec import Codec
from switch.iso8583.framing import frame
from switch.iso8583.message import Message

SIZES = [int(x) for x in os.environ.get("SWITCH_BENCH_SCALE_CARDS", "100000").split(",") if x]
SAMPLE = int(os.environ.get("SWITCH_BENCH_SCALE_SAMPLE", "20000"))
CACHE = os.environ.get("SWITCH_BENCH_SCALE_CACHE")  # --card-cache (default: the switch's)
KEEP = os.environ.get("SWITCH_BENCH_SCALE_KEEP")  # keep / reuse imported states there
CONNS = int(os.environ.get("SWITCH_BENCH_SCALE_CONNS", "8"))
DEPTH = int(os.environ.get("SWITCH_BENCH_SCALE_DEPTH", "16"))
PIN = "1234"
TPK = bytes.fromhex(demo.TERMINALS[0].tpk_clear)
TERMINAL = demo.TERMINALS[0].terminal_id
AMOUNT = 100_000  # 1,000 DZD, the minimum ATM withdrawal
BALANCE = 10_000_000  # 100,000 DZD: a few withdrawals each, within the daily limits
PAN_BASE = 500_000_000  # clear of the demo cards and of bench_core's
GOAL_IMPORT_S = 15 * 60
GOAL_READY_S = 10.0
GOAL_RSS = 2 * 2**30


def pan_of(i: int) -> str:
    return luhn_complete(f"{demo.ON_US_BIN}{PAN_BASE + i:09d}")


# ---- the card base ------------------------------------------------------------------------


def _template(state: Path) -> Path:
    """A demo state directory (BIN route, ATMs) and its issuer keys file for the import."""

    async def go() -> tuple[str, str, str]:
        core = await SwitchCore.open(state, durable=False)
        try:
            row = core.store.query("SELECT pvk, cvk, mk_ac FROM cards WHERE card_id = 1")[0]
        finally:
            await core.close()
        return str(row[0]), str(row[1]), str(row[2])

    pvk, cvk, mk_ac = asyncio.run(go())
    keys = state.parent / "keys.toml"
    keys.write_text(f'pvk = "{pvk}"\ncvk = "{cvk}"\nmk_ac = "{mk_ac}"\n')
    return keys


def _write_files(tmp: Path, n: int) -> tuple[Path, Path]:
    pvk = bytes.fromhex(demo.PVK_CLEAR)
    accounts, cards = tmp / "accounts.csv", tmp / "cards.csv"
    with accounts.open("w") as a, cards.open("w") as c:
        a.write("account,currency,balance,holder,phone\n")
        c.write("pan,expiry,service_code,product,account,holder,phone,pvki,pvv,status\n")
        for i in range(n):
            number = f"{5_000_000_000 + i:010d}-{i % 100:02d}"
            pan = pan_of(i)
            pvv = switch_native.pvv_generate(pvk, pan, 1, PIN)
            a.write(f"{number},012,{BALANCE},Titulaire {i},\n")
            c.write(f"{pan},4912,201,EDAHABIA_CLASSIC,{number},TITULAIRE {i},,1,{pvv},active\n")
    return accounts, cards


def _import(state: Path, what: str, path: Path, *extra: str) -> float:
    cmd = [sys.executable, "-m", "switch.cli", "import", what, str(path), "--state-dir",
           str(state), *extra]  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"switch import {what} failed ({done.returncode}): "
                           f"{(done.stdout + done.stderr)[-800:]}")  # fmt: skip
    return elapsed


def _store_bytes(state: Path) -> int:
    return sum(p.stat().st_size for p in state.glob("switch.db*"))


# ---- switch run ---------------------------------------------------------------------------


def _rss(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _start(state: Path, log: Path) -> tuple[subprocess.Popen[bytes], int, float]:
    """``switch run`` and the seconds from its exec to the first ``/readyz`` 200."""
    iso, http_port = _free_port(), _free_port()
    cmd = [sys.executable, "-m", "switch.cli", "run", "--state-dir", str(state),
           "--iso-port", str(iso), "--grpc-port", str(_free_port()), "--http-port", str(http_port),
           "--log-level", "WARNING"]  # fmt: skip
    if CACHE:
        cmd += ["--card-cache", CACHE]
    env = {**os.environ, "SWITCH_SMS": f"file:{state / 'sms.log'}", "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=1)
        try:
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return proc, iso, time.perf_counter() - t0
        except OSError:
            pass
        finally:
            conn.close()
        if proc.poll() is not None or time.perf_counter() - t0 > 300:
            proc.kill()
            raise RuntimeError("switch run did not get ready:\n" + log.read_text()[-2000:])
        time.sleep(0.01)


# ---- the load (its own process) -----------------------------------------------------------


def _frames(pans: list[str], conn: int, run: int) -> list[tuple[str, bytes]]:
    codec = Codec("ascii87")
    out = []
    for i, pan in enumerate(pans):
        stan = f"{i + 1:06d}"
        msg = Message("0200", {
            2: pan, 3: "010000", 4: f"{AMOUNT:012d}", 7: f"1129{run}{conn:05d}", 11: stan,
            32: demo.ACQUIRER_ID, 41: TERMINAL, 49: "012",
            52: switch_native.pin_block_encrypt(TPK, 0, PIN, pan),
        })  # fmt: skip
        out.append((stan, frame(codec.encode(msg))))
    return out


async def _generate(port: int, pans: list[str], run: int) -> dict[str, object]:
    plans = [_frames(pans[c::CONNS], c, run) for c in range(CONNS)]  # encoded before the clock
    protos, elapsed = await drive(port, plans, DEPTH, 900)
    lat, codes = tally(protos)
    return {"requests": len(pans), "approved": sum(p.approved for p in protos),
            "elapsed": elapsed, "p50": _percentile(lat, 0.5), "p99": _percentile(lat, 0.99),
            "codes": codes}  # fmt: skip


def generator_main(argv: list[str]) -> None:
    """``python -m bench.bench_scale --generate PORT RUN CARDS_FILE``: prints JSON."""
    import uvloop

    port, run, path = int(argv[0]), int(argv[1]), Path(argv[2])
    pans = [pan_of(int(x)) for x in path.read_text().split()]
    print(json.dumps(uvloop.run(_generate(port, pans, run))))


def _load(port: int, run: int, sample: Path) -> dict[str, object]:
    gen = subprocess.run(
        [sys.executable, "-m", "bench.bench_scale", "--generate", str(port), str(run),
         str(sample)],
        capture_output=True, text=True, timeout=1800, check=True,
    )  # fmt: skip
    return dict(json.loads(gen.stdout))


# ---- one size -----------------------------------------------------------------------------


def _line(name: str, r: dict[str, object]) -> float:
    approved, requests = int(str(r["approved"])), int(str(r["requests"]))
    rate = approved / float(str(r["elapsed"]))
    codes = "" if approved == requests else f", codes {r['codes']}"
    p50, p99 = float(str(r["p50"])) * 1e3, float(str(r["p99"])) * 1e3
    print(f"  {name:<28} {rate:>9,.0f} approved/s  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  "
          f"({approved}/{requests} approved{codes})")  # fmt: skip
    return rate


def _ok(good: bool) -> str:
    return "ok" if good else "MISSED"


def _imported(tmp: Path, n: int) -> Path:
    """A state directory holding ``n`` imported cards (timed and reported), in ``tmp``."""
    state = tmp / "state"
    state.mkdir(parents=True, mode=0o700)
    keys = _template(state)
    t0 = time.perf_counter()
    accounts, cards = _write_files(tmp, n)
    t_files = time.perf_counter() - t0
    t_accounts = _import(state, "accounts", accounts)
    t_cards = _import(state, "cards", cards, "--keys", str(keys))
    accounts.unlink()
    cards.unlink()
    size = _store_bytes(state)
    total = t_accounts + t_cards
    print(f"bench_scale: {n:,} cards on {n:,} CCP accounts (export written in {t_files:.0f} s, "
          "untimed)")  # fmt: skip
    print(f"  switch import accounts       {n / t_accounts:>9,.0f} accounts/s ({t_accounts:.1f} s)")
    print(f"  switch import cards          {n / t_cards:>9,.0f} cards/s    ({t_cards:.1f} s)")
    at_16m = 16_000_000 / n * total
    print(f"  both, 16 M at this rate      {at_16m / 60:>9.1f} min  (goal 15 min: "
          f"{_ok(at_16m < GOAL_IMPORT_S)}; a straight line from {n:,})")  # fmt: skip
    print(f"  store on disk                {size / 2**20:>9,.0f} MiB  ({size / n:.0f} B a card "
          "with its account)")  # fmt: skip
    return state


def _state_for(tmp: Path, n: int) -> Path:
    """The state the passes run on: imported here, or a copy of the one ``KEEP`` holds."""
    if KEEP is None:
        return _imported(tmp, n)
    kept = Path(KEEP) / f"n{n}"
    if not (kept / "state" / "switch.db").exists():
        shutil.rmtree(kept, ignore_errors=True)
        _imported(kept, n)
    else:
        size = _store_bytes(kept / "state")
        print(f"bench_scale: {n:,} cards, imported earlier ({kept}; import not timed again)")
        print(f"  store on disk                {size / 2**20:>9,.0f} MiB  ({size / n:.0f} B a "
              "card with its account)")  # fmt: skip
    state = tmp / "state"
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.copytree(kept / "state", state)
    return state


def run_size(base: Path, n: int) -> None:
    tmp = base / f"n{n}"
    state = _state_for(tmp, n)
    rng = random.Random(n)
    k = min(SAMPLE, n)
    picked = rng.sample(range(n), k)
    cold_file, warm_file = tmp / "cold.txt", tmp / "warm.txt"
    cold_file.write_text("\n".join(map(str, picked)))
    rng.shuffle(picked)
    warm_file.write_text("\n".join(map(str, picked)))

    proc, port, ready = _start(state, tmp / "switch.log")
    try:
        rss_ready = _rss(proc.pid)
        print(f"  switch run ready             {ready:>9.2f} s    (/readyz 200; goal 10 s: "
              f"{_ok(ready < GOAL_READY_S)})")  # fmt: skip
        print(f"  RSS when ready               {rss_ready / 2**20:>9,.0f} MiB  (goal 2 GiB: "
              f"{_ok(rss_ready < GOAL_RSS)})")  # fmt: skip
        cpu0 = _cpu_seconds(proc.pid)
        cold = _line(f"cold cache, {k:,} cards", _load(port, 1, cold_file))
        warm = _line("warm cache, the same again", _load(port, 2, warm_file))
        cpu = _cpu_seconds(proc.pid) - cpu0
        rss, peak = _rss(proc.pid), _rss(proc.pid, "VmHWM")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    ratio = cold / warm if warm else float("nan")
    print(f"  cold / warm                  {ratio:>9.0%}      (goal 70 %: {_ok(ratio >= 0.7)})")
    print(f"  RSS after the load           {rss / 2**20:>9,.0f} MiB  (peak {peak / 2**20:,.0f} "
          f"MiB; switch CPU {cpu / (2 * k) * 1e6:.0f} us a withdrawal)")  # fmt: skip
    shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        print(f"bench_scale: sizes {', '.join(f'{n:,}' for n in SIZES)}; {CONNS} x {DEPTH} "
              f"withdrawals in flight; card cache {CACHE or 'default'}")  # fmt: skip
        for n in SIZES:
            run_size(base, n)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--generate":
        generator_main(sys.argv[2:])
    else:
        main()
