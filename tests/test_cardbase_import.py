"""``switch import cards|accounts``: an issuer's card base into a real SQLite store.

Files are written as a card management system would export them (CSV with a header, JSON
Lines); PVVs and IBM offsets come from the demo PVK, so an imported card is a card the real
core authorizes with its PIN. The resumability test SIGKILLs a real import process mid-file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import switch_native
from hypothesis import given
from hypothesis import strategies as st

from switch.cardbase.records import _luhn_ok
from switch.cli import main as switch_main
from switch.core import demo
from switch.core import testing as t
from switch.core.domain import luhn_complete, luhn_ok
from switch.core.model import ResponseCode
from switch.core.pipeline import DECIMALISATION_TABLE, ibm_validation_data
from switch.core.service import SwitchCore
from switch.store.sqlite import SqliteStore

PVK = bytes.fromhex(demo.PVK_CLEAR)
NOW = datetime(2026, 11, 29, 10, 0, tzinfo=UTC).timestamp()  # a fixed clock for the core
CARD_HEADER = "pan,expiry,service_code,product,account,holder,phone,pvki,pvv,ibm_offset,status"
ACCOUNT_HEADER = "account,currency,balance,holder,phone"


def pan(n: int) -> str:
    """The n-th test PAN of the demo BIN (valid Luhn, none of the demo cards)."""
    return luhn_complete(f"628058{500_000_000 + n:09d}")


def account_no(n: int) -> str:
    return f"{3_000_000_000 + n:010d}-{n % 100:02d}"


def pvv(p: str, pin: str = "1234") -> str:
    return str(switch_native.pvv_generate(PVK, p, 1, pin))


def ibm_offset(p: str, pin: str) -> str:
    return str(
        switch_native.ibm3624_offset_generate(
            PVK, pin, ibm_validation_data(p), DECIMALISATION_TABLE, len(pin)
        )
    )


def card_line(n: int, *, status: str = "active", expiry: str = "3012", **kw: str) -> str:
    p = kw.get("pan", pan(n))
    cols = {
        "pan": p, "expiry": expiry, "service_code": "201", "product": "EDAHABIA_CLASSIC",
        "account": account_no(n), "holder": f"HOLDER {n}", "phone": "", "pvki": "1",
        "pvv": pvv(p) if p.isascii() and p.isdigit() else "1234", "ibm_offset": "",
        "status": status,
    }  # fmt: skip
    cols.update(kw)
    return ",".join(cols[c] for c in CARD_HEADER.split(","))


def write(path: Path, header: str, lines: Iterable[str]) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        fh.write(header + "\n")
        for line in lines:
            fh.write(line + "\n")
    return path


def accounts_csv(path: Path, ns: Iterable[int], balance: int = 2_000_000) -> Path:
    rows = (f"{account_no(n)},012,{balance},Holder {n},+21356{n:07d}" for n in ns)
    return write(path, ACCOUNT_HEADER, rows)


@pytest.fixture
def keys(state: Path, tmp_path: Path) -> Path:
    """The issuer keys file: the demo PVK, CVK and MK-AC cryptograms under the state's LMK."""

    async def read() -> tuple[str, str, str]:
        store = SqliteStore(state / "switch.db", durable=False)
        await store.open()
        try:
            pvk, cvk, mk_ac = store.query("SELECT pvk, cvk, mk_ac FROM cards WHERE card_id = 1")[0]
        finally:
            await store.close()
        return str(pvk), str(cvk), str(mk_ac)

    import asyncio

    pvk, cvk, mk_ac = asyncio.run(read())
    path = tmp_path / "keys.toml"
    path.write_text(f'pvk = "{pvk}"\ncvk = "{cvk}"\nmk_ac = "{mk_ac}"\n')
    return path


def run(*argv: str | Path) -> int:
    return switch_main(["import", *map(str, argv)])


def query(state: Path, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    import sqlite3

    conn = sqlite3.connect(state / "switch.db")
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def pan_hash(state: Path, p: str) -> bytes:
    key = bytes.fromhex((state / "pan.key").read_text().strip())
    return hmac.new(key, p.encode(), hashlib.sha256).digest()


# -- good files ----------------------------------------------------------------------------------
def test_csv_accounts_then_cards_are_stored_as_the_core_stores_them(
    state: Path, keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("accounts", accounts_csv(tmp_path / "a.csv", [1, 2, 3]), "--state-dir", state) == 0
    out = capsys.readouterr().out
    assert "3 loaded, 0 updated, 0 rejected" in out
    cards = write(tmp_path / "c.csv", CARD_HEADER, [
        card_line(1),
        card_line(2, status="delivered", phone="+213770000002"),
        card_line(3, pvv="", pvki="", ibm_offset=ibm_offset(pan(3), "4321")),
    ])  # fmt: skip
    assert run("cards", cards, "--state-dir", state, "--keys", keys) == 0
    captured = capsys.readouterr()
    assert "3 loaded, 0 updated, 0 rejected" in captured.out
    assert captured.err == ""

    pvk, cvk, mk_ac = query(state, "SELECT pvk, cvk, mk_ac FROM cards WHERE card_id = 1")[0]
    rows = query(
        state,
        "SELECT c.pan_first6, c.pan_last4, c.expiry, c.service_code, c.pvki, c.pvv, "
        "c.ibm_offset, c.status, c.pvk, c.cvk, c.mk_ac, c.holder, a.number, a.balance, a.phone "
        "FROM cards c JOIN accounts a USING (account_id) WHERE c.pan_hash = ?",
        (pan_hash(state, pan(2)),),
    )
    assert rows == [(
        "628058", pan(2)[-4:], "3012", "201", 1, pvv(pan(2)), "", "delivered", pvk, cvk, mk_ac,
        "HOLDER 2", account_no(2), 2_000_000, "+213770000002",  # the card's phone: the SMS number
    )]  # fmt: skip
    (offset,) = query(
        state, "SELECT ibm_offset FROM cards WHERE pan_hash = ?", (pan_hash(state, pan(3)),)
    )[0]
    assert offset == ibm_offset(pan(3), "4321")
    # The PAN is stored only as its keyed hash and first 6 / last 4: nowhere in the files.
    for f in state.glob("switch.db*"):
        data = f.read_bytes()
        for n in (1, 2, 3):
            assert pan(n).encode() not in data


def test_jsonl_files_load_the_same_records(
    state: Path, keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    accounts = tmp_path / "accounts.jsonl"
    accounts.write_text(  # with the byte order mark some Windows tools write
        "\ufeff" + json.dumps({"account": account_no(7), "currency": 12, "balance": 123_456,
                    "holder": "Salima Ait Ali", "phone": "+213550000077"}) + "\n\n"
    )  # fmt: skip
    cards = tmp_path / "cards.ndjson"
    cards.write_text(
        json.dumps({"pan": pan(7), "expiry": "2912", "service_code": "201",
                    "product": "EDAHABIA_CLASSIC", "account": account_no(7), "pvki": 1,
                    "pvv": pvv(pan(7)), "status": "active", "holder": "SALIMA AIT ALI"}) + "\n"
    )  # fmt: skip
    assert run("accounts", accounts, "--state-dir", state) == 0
    assert run("cards", cards, "--state-dir", state, "--keys", keys) == 0
    assert capsys.readouterr().err == ""
    assert query(
        state,
        "SELECT a.balance, a.holder, a.phone, a.currency, c.expiry, c.status FROM cards c "
        "JOIN accounts a USING (account_id) WHERE c.pan_hash = ?",
        (pan_hash(state, pan(7)),),
    ) == [(123_456, "Salima Ait Ali", "+213550000077", 12, "2912", "active")]


# -- rejects -------------------------------------------------------------------------------------
def test_each_bad_card_record_is_one_line_with_its_line_number_and_reason(
    state: Path, keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    accounts_csv(tmp_path / "a.csv", [1, 2])
    assert run("accounts", tmp_path / "a.csv", "--state-dir", state) == 0
    bad_luhn = pan(1)[:-1] + str((int(pan(1)[-1]) + 1) % 10)
    arabic = pan(2)[:-1] + "\u0665"  # ARABIC-INDIC DIGIT FIVE
    lines = [
        card_line(1),  # line 2: good
        card_line(9, pan=bad_luhn, account=account_no(1)),  # 3
        card_line(1),  # 4: the PAN of line 2 again
        card_line(9, pan=demo.CARDS[0].pan, account=account_no(1)),  # 5: a demo card's PAN
        card_line(2, product="EDAHABIA_GOLD"),  # 6
        card_line(3),  # 7: its account is not in the store
        card_line(2, expiry="3013"),  # 8
        card_line(2, pan=arabic),  # 9
        card_line(2, pvv="12a4"),  # 10
        card_line(2, status="stolen-ish"),  # 11
        card_line(2, pvv=""),  # 12: neither PVV nor offset
        card_line(2)[:-7],  # 13: a field short
        card_line(2, phone="0550 00 00 00"),  # 14
        card_line(2),  # 15: good
    ]
    assert run("cards", write(tmp_path / "c.csv", CARD_HEADER, lines),
               "--state-dir", state, "--keys", keys) == 1  # fmt: skip
    captured = capsys.readouterr()
    f = tmp_path / "c.csv"
    m1, m0 = pan(1)[:6] + "******" + pan(1)[-4:], demo.CARDS[0].pan
    assert captured.err.splitlines() == [
        f"{f}:3: pan: bad Luhn check digit ({bad_luhn[:6]}******{bad_luhn[-4:]})",
        f"{f}:4: pan: duplicate PAN {m1} in this file (line 2)",
        f"{f}:5: pan: duplicate PAN {m0[:6]}******{m0[-4:]}: already in the store (see --update)",
        f"{f}:6: product: unknown product 'EDAHABIA_GOLD'",
        f"{f}:7: account: unknown account {account_no(3)}",
        f"{f}:8: expiry: YYMM expected, month 13 is not 01 to 12",
        f"{f}:9: pan: non-ASCII digits",
        f"{f}:10: pvv: not digits",
        f"{f}:11: status: one of ordered, delivered, active, blocked, lost, stolen, expired "
        "expected",
        f"{f}:12: pvv: missing (a PVV with its pvki, or an ibm_offset, is required)",
        f"{f}:13: malformed record: 10 fields, the header has 11",
        f"{f}:14: phone: international format expected, e.g. +213550000001",
    ]
    assert "2 loaded, 0 updated, 12 rejected" in captured.out
    for n in (1, 2):  # never a full PAN in what the import prints
        assert pan(n) not in captured.out + captured.err
    assert demo.CARDS[0].pan not in captured.out + captured.err
    assert query(state, "SELECT COUNT(*) FROM cards WHERE pan_first6 = '628058' AND "
                 "pan_last4 IN (?, ?)", (pan(1)[-4:], pan(2)[-4:])) == [(2,)]  # fmt: skip


def test_each_bad_account_record_is_rejected_naming_the_field(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = write(tmp_path / "a.csv", ACCOUNT_HEADER, [
        f"{account_no(1)},012,100,A,",  # 2: good
        f"{account_no(1)},012,100,A,",  # 3: again
        f"{demo.CARDS[0].account},012,100,A,",  # 4: a demo account
        f"{account_no(2)},012,-5,A,",  # 5
        f"{account_no(2)},012,150.00,A,",  # 6
        f"{account_no(2)},0,100,A,",  # 7
        f"{account_no(2)},012,100,,",  # 8
        f"CCP-{account_no(2)},012,100,A,",  # 9
        f"{account_no(2)},012,\u0661\u0660\u0660,A,",  # 10: Arabic-Indic 100
        f"{account_no(2)},012,100,A,+213550000002",  # 11: good
    ])  # fmt: skip
    assert run("accounts", f, "--state-dir", state) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"{f}:3: account: duplicate account {account_no(1)} in this file (line 2)",
        f"{f}:4: account: duplicate account {demo.CARDS[0].account}: already in the store "
        "(see --update)",
        f"{f}:5: balance: must not be negative (a CCP account has no overdraft)",
        f"{f}:6: balance: integer minor units expected (15000000, not 150000.00)",
        f"{f}:7: currency: ISO 4217 numeric code expected, e.g. 012",
        f"{f}:8: holder: missing",
        f"{f}:9: account: CCP account number expected (digits, optional -key)",
        f"{f}:10: balance: non-ASCII digits",
    ]
    assert "2 loaded, 0 updated, 8 rejected" in captured.out


# -- changes after the first load ----------------------------------------------------------------
def test_a_known_pan_is_rejected_without_update_and_changed_with_it(
    state: Path, keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("accounts", accounts_csv(tmp_path / "a.csv", [1, 2]), "--state-dir", state) == 0
    first = write(tmp_path / "c1.csv", CARD_HEADER, [card_line(1), card_line(2, status="lost")])
    assert run("cards", first, "--state-dir", state, "--keys", keys) == 0
    second = write(tmp_path / "c2.csv", CARD_HEADER, [
        card_line(1, status="blocked", expiry="3106", phone="+213660000001"),
        card_line(2, status="active"),  # a lost card never comes back
    ])  # fmt: skip
    assert run("cards", second, "--state-dir", state, "--keys", keys) == 1
    err = capsys.readouterr().err.splitlines()
    assert [e.split(": ", 1)[1] for e in err] == [
        f"pan: duplicate PAN {pan(n)[:6]}******{pan(n)[-4:]}: already in the store (see --update)"
        for n in (1, 2)
    ]
    phone = "SELECT phone FROM accounts WHERE number = ?"
    assert query(state, phone, (account_no(1),)) == [("+21356" + "1".zfill(7),)]  # unchanged
    assert run("cards", second, "--state-dir", state, "--keys", keys, "--update") == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f"{second}:3: status: lost -> active is not allowed"]
    assert "0 loaded, 1 updated, 1 rejected" in captured.out
    assert query(
        state,
        "SELECT c.status, c.expiry, a.phone FROM cards c JOIN accounts a USING (account_id) "
        "WHERE c.pan_hash = ?",
        (pan_hash(state, pan(1)),),
    ) == [("blocked", "3106", "+213660000001")]
    assert query(state, "SELECT status FROM cards WHERE pan_hash = ?",
                 (pan_hash(state, pan(2)),)) == [("lost",)]  # fmt: skip


# -- refusals (exit 2, nothing written) ----------------------------------------------------------
def test_usage_errors_exit_2_naming_the_problem(
    state: Path, keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def refused(*argv: str | Path) -> str:
        assert run(*argv) == 2
        return capsys.readouterr().err.strip()

    missing = tmp_path / "nope.csv"
    assert refused("accounts", missing, "--state-dir", state).startswith(
        f"switch import: FILE: cannot read {missing}"
    )
    txt = write(tmp_path / "a.txt", ACCOUNT_HEADER, [])
    assert "--format: cannot tell the format of 'a.txt'" in refused("accounts", txt)
    bad_header = write(tmp_path / "a.csv", "account,currency,balance,holder,iban", [])
    assert "header: unknown column 'iban'" in refused("accounts", bad_header, "--state-dir", state)
    no_pvk = tmp_path / "k.toml"
    no_pvk.write_text('cvk = "U0123456789ABCDEF0123456789ABCDEF"\n')
    cards = write(tmp_path / "c.csv", CARD_HEADER, [card_line(1)])
    assert "keys.pvk: required" in refused("cards", cards, "--state-dir", state, "--keys", no_pvk)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(keys.read_text().replace('pvk = "U', 'pvk = "UFF', 1)[:-1])
    assert refused("cards", cards, "--state-dir", state, "--keys", wrong).startswith(
        "switch import: keys.pvk:"
    )

    async def while_running() -> None:
        core = await SwitchCore.open(state, durable=False, clock=t.ManualClock(NOW))
        try:  # without operator credentials (test_cardbase_live: with them)
            env = {k: os.environ.pop(k, "") for k in ("SWITCH_OPERATOR_ID", "SWITCH_OPERATOR_KEY")}
            try:
                assert run("cards", cards, "--state-dir", state, "--keys", keys) == 2
            finally:
                os.environ.update({k: v for k, v in env.items() if v})
        finally:
            await core.close()

    import asyncio

    asyncio.run(while_running())
    assert (
        capsys.readouterr()
        .err.strip()
        .startswith(
            f"switch import: state_dir: {state} is in use by a running switch: the import goes "
            "through it, with operator credentials (SWITCH_OPERATOR_ID/SWITCH_OPERATOR_KEY"
        )
    )
    assert query(state, "SELECT COUNT(*) FROM import_progress") == [(0,)]


# -- the imported card works ---------------------------------------------------------------------
def test_an_imported_card_withdraws_with_its_pin_through_the_real_core(
    state: Path, keys: Path, tmp_path: Path
) -> None:
    assert run("accounts", accounts_csv(tmp_path / "a.csv", [1, 2], 5_000_000),
               "--state-dir", state) == 0  # fmt: skip
    cards = write(tmp_path / "c.csv", CARD_HEADER, [
        card_line(1),
        card_line(2, pvv="", pvki="", ibm_offset=ibm_offset(pan(2), "9876")),
    ])  # fmt: skip
    assert run("cards", cards, "--state-dir", state, "--keys", keys) == 0

    async def body(core: SwitchCore) -> None:
        await t.authorize_expecting(
            core, t.withdrawal(pan(1), 100_000, "4321"), ResponseCode.INCORRECT_PIN
        )
        ok = await t.authorize_expecting(core, t.withdrawal(pan(1), 1_000_000, "1234"))
        assert ok.available_balance == 5_000_000 - 1_000_000 - 3_000  # own-ATM fee 30 DZD
        await t.authorize_expecting(core, t.withdrawal(pan(2), 200_000, "9876"))

    t.run_core(state, body, durable=False, clock=t.ManualClock(NOW))
    assert query(state, "SELECT balance FROM accounts WHERE number = ?", (account_no(1),)) == [
        (5_000_000 - 1_003_000,)
    ]


# -- resumable after a crash ---------------------------------------------------------------------
def test_an_import_killed_mid_file_resumes_and_loads_every_record_exactly_once(
    state: Path, keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    n = 20_000
    accounts = tmp_path / "a.csv"
    write(accounts, ACCOUNT_HEADER, (f"{account_no(1)},012,100,A,",))
    assert run("accounts", accounts, "--state-dir", state) == 0
    # Every 50th record is bad (expiry month 00), so every batch prints a line once committed.
    lines = (
        card_line(i, account=account_no(1), pvv="1234", expiry="3000" if i % 50 == 0 else "3012")
        for i in range(1, n + 1)
    )
    # A long file name, which every refusal line repeats: the 400 lines (>100 KB) overfill the
    # stderr pipe this test reads one line of, so the import blocks mid-file until the kill
    # however loaded the machine (the whole file takes ~1 s: a test process descheduled that
    # long would otherwise find it finished).
    cards = write(tmp_path / f"cards-{'x' * 200}.csv", CARD_HEADER, lines)
    argv = ["import", "cards", str(cards), "--state-dir", str(state), "--keys", str(keys),
            "--batch-size", "200", "--no-fsync"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "switch.cli", *argv],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # printed once the first batch is committed
        assert first == f"{cards}:51: expiry: YYMM expected, month 00 is not 01 to 12\n"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    ((next_line, done, loaded),) = query(
        state, "SELECT next_line, done, loaded FROM import_progress WHERE kind = 'cards'"
    )
    assert done == 0 and 0 < next_line < n + 1  # killed mid-file, some batches committed
    assert query(state, "SELECT COUNT(*) FROM cards WHERE card_id > 8") == [(loaded,)]

    capsys.readouterr()
    assert run(*argv[1:]) == 1
    captured = capsys.readouterr()
    assert f"resumed after line {next_line}" in captured.out
    assert f"{n - n // 50} loaded, 0 updated, {n // 50} rejected" in captured.out
    assert "duplicate" not in captured.err  # nothing committed before the kill came again
    reported = [int(e.split(":")[1]) for e in captured.err.splitlines()]
    assert reported == [i + 1 for i in range(50, n + 1, 50) if i + 1 > next_line]
    assert query(state, "SELECT COUNT(*), COUNT(DISTINCT pan_hash) FROM cards "
                 "WHERE card_id > 8") == [(n - n // 50, n - n // 50)]  # fmt: skip
    assert query(state, "SELECT COUNT(*) FROM cards WHERE pan_hash = ?",
                 (pan_hash(state, pan(n - 1)),)) == [(1,)]  # fmt: skip
    # and the same command a third time has nothing left to do
    assert run(*argv[1:]) == 1
    assert "already imported" in capsys.readouterr().out


def test_ctrl_c_rolls_back_the_batch_in_flight_and_says_how_to_resume(
    state: Path, keys: Path, tmp_path: Path
) -> None:
    accounts = write(tmp_path / "a.csv", ACCOUNT_HEADER, (f"{account_no(1)},012,100,A,",))
    assert run("accounts", accounts, "--state-dir", state) == 0
    # Every other record is refused: the refusals (~90 bytes each) fill the stderr pipe this
    # test reads only one line of, so the import blocks on its next refusal long before the
    # end of the file and is still importing when SIGINT arrives, however loaded the machine.
    n = 20_000
    lines = (
        card_line(i, account=account_no(1), pvv="1234", expiry="3000" if i % 2 == 0 else "3012")
        for i in range(1, n + 1)
    )
    cards = write(tmp_path / "cards.csv", CARD_HEADER, lines)
    proc = subprocess.Popen(
        [sys.executable, "-m", "switch.cli", "import", "cards", str(cards), "--state-dir",
         str(state), "--keys", str(keys), "--batch-size", "200", "--no-fsync"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # as from a terminal: a shell's background job (the suite under test-dates.sh may be
        # one) hands its children SIGINT ignored, and Python then keeps it ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert first.startswith(f"{cards}:3: expiry:"), first + proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    # (the interrupt may cut the refusal being written: the message ends the output)
    assert err.rstrip("\n").endswith(
        "switch import: interrupted; the batches committed so far stay, the same command "
        "resumes after them"
    )
    ((loaded, done),) = query(
        state, "SELECT loaded, done FROM import_progress WHERE kind = 'cards'"
    )
    assert done == 0
    assert query(state, "SELECT COUNT(*) FROM cards WHERE card_id > 8") == [(loaded,)]


_GOOD = {
    "pan": "6280580000000017", "expiry": "3012", "service_code": "201",
    "product": "EDAHABIA_CLASSIC", "account": "0001000001-17", "holder": "HOLDER 1",
    "phone": "+213550000001", "pvki": "1", "pvv": "1234", "ibm_offset": "",
    "status": "active", "pan_sequence": "01",
}  # fmt: skip
_ODD_VALUES = st.sampled_from(
    ["", "0", "00", "01", "13", "1299", "3000", "3013", "4912", "201", "2O1", "7", "12345",
     "123456789012", "6280580000000018", "٦٢٨٠٥٨٠٠٠٠٠٠٠٠١٧", "628058000000001", "+21355",
     "+213550000001", "0213550000001", "active", "ACTIVE", "blocked", "x" * 101, "a\tb",
     "a\ufffdb", "0001000001-1", "0001000001-17", "EDAHABIA_CLASSIC", " 1234"]
)  # fmt: skip


@given(st.dictionaries(st.sampled_from(sorted(_GOOD)), _ODD_VALUES, max_size=4))
def test_the_fast_card_check_accepts_and_refuses_as_the_field_checks_do(
    changes: dict[str, str],
) -> None:
    """``parse_card`` takes one pass of patterns for a good record and the field-by-field
    checks otherwise: the same record, or the same reason, either way."""
    from switch.cardbase.records import RecordError, _parse_card_checked, parse_card

    rec = {**_GOOD, **changes}
    outcomes: list[object] = []
    for parse in (parse_card, _parse_card_checked):
        try:
            outcomes.append(parse(rec))
        except RecordError as e:
            outcomes.append(str(e))
    assert outcomes[0] == outcomes[1]


@given(st.text("0123456789", min_size=12, max_size=19))
def test_the_import_luhn_check_is_the_core_s(pan: str) -> None:
    """The import's byte-table Luhn accepts exactly the PANs the core's accepts."""
    assert _luhn_ok(pan) == luhn_ok(pan)


def test_a_progress_bar_on_a_terminal_and_none_otherwise(state: Path, tmp_path: Path) -> None:
    import fcntl
    import pty
    import struct
    import termios

    accounts = accounts_csv(tmp_path / "a.csv", range(1, 501))
    argv = [sys.executable, "-m", "switch.cli", "import", "accounts", str(accounts),
            "--state-dir", str(state), "--batch-size", "100"]  # fmt: skip
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    try:
        proc = subprocess.run(argv, stderr=slave, stdout=subprocess.PIPE, text=True, timeout=60)
        os.close(slave)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
    assert proc.returncode == 0
    bar = seen.decode().replace("\r", "\n").splitlines()
    size = accounts.stat().st_size
    assert any(line.startswith("100%|") and "500 ok, 0 rejected" in line for line in bar), bar
    assert f"{size / 1024:.1f}k/{size / 1024:.1f}k" in seen.decode()  # bytes, KiB
    # the same command with stderr on a pipe (a log file, cron): no bar, no control characters
    state2 = tmp_path / "state2"
    argv[argv.index(str(state))] = str(state2)
    piped = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0 and piped.stderr == ""
    assert state2.stat().st_mode & 0o777 == 0o700  # a state dir the import creates is private


def test_overlapped_and_one_process_imports_give_the_same_store(
    state: Path, keys: Path, tmp_path: Path
) -> None:
    """The importer checks batch N+1 in a child process while batch N is written (here for
    any file size); with ``overlap=False`` it does one after the other. Same rows, same
    rejects, same progress either way; a bad header found by the child stops the import
    before anything is written."""
    import shutil

    from switch.cardbase.importer import Importer, IssuerKeys, Reject
    from switch.cardbase.keys import load_keys
    from switch.cardbase.reader import FormatError
    from switch.config import load_config
    from switch.store.sqlite_cardbase import SqliteCardBase

    assert run("accounts", accounts_csv(tmp_path / "a.csv", range(1, 301)), "--state-dir",
               state) == 0  # fmt: skip
    lines = [card_line(i, expiry="3000" if i % 7 == 0 else "3012") for i in range(1, 301)]
    lines += [card_line(5)]  # a duplicate of a record two batches back
    cards = write(tmp_path / "c.csv", CARD_HEADER, lines)
    key_set: IssuerKeys = load_keys(keys)
    results = []
    for overlap in (True, False):
        copy = tmp_path / f"state-{overlap}"
        shutil.copytree(state, copy)
        db = SqliteCardBase(copy / "switch.db", durable=False)
        rejects: list[Reject] = []
        importer = Importer(
            db, kind="cards", update=False, config=load_config(),
            pan_key=bytes.fromhex((copy / "pan.key").read_text()), keys=key_set,
            batch_size=50, overlap=overlap, child_min_bytes=0,
        )  # fmt: skip
        out = importer.run(cards, "csv", on_reject=rejects.append)
        if overlap:
            bad = write(tmp_path / "bad.csv", CARD_HEADER.replace("pan,", "pam,"), lines[:3])
            with pytest.raises(FormatError, match="header: unknown column 'pam'"):
                importer.run(bad, "csv", on_reject=rejects.append)
        db.close()
        rows = query(copy, "SELECT card_id, pan_hash, account_id, expiry FROM cards ORDER BY 1")
        results.append((out.loaded, out.rejected, rejects, rows, out.total))
    assert results[0] == results[1]
    assert results[0][:2] == (300 - 42, 42 + 1)


def test_the_last_card_s_phone_wins_when_the_reader_looked_its_account_up_early(
    state: Path, keys: Path, tmp_path: Path
) -> None:
    """The reader process looks up the accounts of the batches ahead of the one being
    written; a card's SMS number is compared with the account's as committed, so a number
    changed by an earlier batch of the same file and changed back by a later one ends as
    the file's last card says."""
    from switch.cardbase.importer import Importer
    from switch.cardbase.keys import load_keys
    from switch.config import load_config
    from switch.store.sqlite_cardbase import SqliteCardBase

    assert run("accounts", accounts_csv(tmp_path / "a.csv", [1]), "--state-dir", state) == 0
    original = f"+21356{1:07d}"
    changed = "+213550009999"
    lines = [
        card_line(1, account=account_no(1), phone=changed),
        card_line(2, account=account_no(1), phone=original),
        card_line(3, account=account_no(1)),
    ]
    cards = write(tmp_path / "c.csv", CARD_HEADER, lines)
    db = SqliteCardBase(state / "switch.db", durable=False)
    try:
        importer = Importer(
            db, kind="cards", update=False, config=load_config(),
            pan_key=bytes.fromhex((state / "pan.key").read_text()), keys=load_keys(keys),
            batch_size=1, child_min_bytes=0,
        )  # fmt: skip
        out = importer.run(cards, "csv", on_reject=lambda r: None)
    finally:
        db.close()
    assert (out.loaded, out.rejected) == (3, 0)
    assert query(state, "SELECT phone FROM accounts WHERE number = ?", (account_no(1),)) == [
        (original,)
    ]
