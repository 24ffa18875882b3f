"""The decimalisation-table attack on IBM 3624 verification (DA/EA), tried as a host process
would: raw payShield frames over TCP, keys and PIN blocks built with psec.

With the table ``0000000000000000`` the natural PIN is always 0000, so an offset check succeeds
exactly when the offset equals the PIN: 10,000 DA calls recover any PIN. The HSM must refuse
weak tables (payShield's rule: at least 8 distinct digits, none more than 4 times; error 25),
offer tables it holds (``K`` + index, or encrypted under LMK pair 18-19 variant 1), and raise
an alarm when PIN verifications keep failing for one key and account.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from psec import des, pin, pinblock

from switch.core.pipeline import DECIMALISATION_TABLE, DECIMALISATION_TABLE_REF
from switch.hsm.audit import Audit, attach_file
from switch.hsm.client import HsmError
from switch.hsm.core import HsmCore
from switch.hsm.dectables import DecTables
from switch.hsm.lmk import Lmk
from switch.hsm.pinwatch import PinFailureWatch
from switch.hsm.server import bound_port, start_hsm_server, stop_hsm_server
from switch.hsm.tcp_client import TcpHsmClient
from tests.hsm_peer import ask, lmk_pair, under_lmk
from tests.ibm_card import add_ibm_offset_card
from tests.test_hsm_server import listening, stop
from tests.test_hsm_server import serve as serve_process

pytestmark = pytest.mark.filterwarnings("ignore:.*TripleDES")

PAN = "5213410012345678"
ACCOUNT = PAN[:-1][-12:]  # payShield: 12 rightmost digits without the check digit
PIN = "2468"
STANDARD = "0123456789012345"
DATA = "12345678901N"  # PIN validation data: 11 hex + N (last 5 account digits)
TPK_CLEAR = des.adjust_key_parity(bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"))
PVK_CLEAR = des.adjust_key_parity(bytes.fromhex("1C1C1C1C1C1C1C1C4F4F4F4F4F4F4F4F"))


def full_data() -> str:
    return DATA[:-1] + PAN[-6:-1]


def da(table: str, offset: str, pin_value: str = PIN) -> bytes:
    """A DA command as a host writes it (TPK, PVK, max PIN length, PIN block, format 01,
    check length 04, account, decimalisation table, validation data, offset F-padded)."""
    block = des.encrypt_tdes_ecb(TPK_CLEAR, pinblock.encode_pinblock_iso_0(pin_value, PAN))
    return (
        f"DA{under_lmk(TPK_CLEAR, 'TPK')}{under_lmk(PVK_CLEAR, 'PVK')}12"
        f"{block.hex().upper()}0104{ACCOUNT}{table}{DATA}{offset.ljust(12, 'F')}"
    ).encode()


def offset_for(table: str, pin_value: str = PIN) -> str:
    offset: str = pin.generate_ibm3624_offset(PVK_CLEAR, table, pin_value, full_data(), 0, 16, "F")
    return offset


def serve(
    scenario: Callable[[int], Awaitable[None]],
    core: HsmCore | None = None,
) -> None:
    async def main() -> None:
        server = await start_hsm_server(Lmk.test(), "127.0.0.1", 0, core=core)
        try:
            await scenario(bound_port(server))
        finally:
            await stop_hsm_server(server)

    asyncio.run(asyncio.wait_for(main(), 30))


def test_the_all_zero_table_attack_gets_error_25_not_a_verification_result() -> None:
    async def scenario(port: int) -> None:
        # The attack: with an all-zero table the right offset is the PIN itself. Every guess,
        # the right one included, must be refused before any PIN is checked.
        for guess in ("0000", "1357", PIN, "9999"):
            assert await ask(port, da("0000000000000000", guess)) == b"DB25"
        # The same PIN verifies normally with a strong table: the refusal is about the table.
        assert await ask(port, da(STANDARD, offset_for(STANDARD))) == b"DB00"
        assert await ask(port, da(STANDARD, offset_for(STANDARD, "1111"))) == b"DB01"

    serve(scenario)


@pytest.mark.parametrize(
    "table",
    [
        "0123456012345601",  # 7 distinct digits
        "0000012345678901",  # 0 six times
        "1111123456789023",  # 1 five times
        "9999999999999999",
        "01234567890123AB",  # not all decimal
    ],
)
def test_weak_or_non_decimal_tables_are_refused_on_da_and_ea(table: str) -> None:
    zpk_clear = des.adjust_key_parity(bytes.fromhex("89ABCDEF0123456776543210FEDCBA98"))

    async def scenario(port: int) -> None:
        assert await ask(port, da(table, "0000")) == b"DB25"
        block = des.encrypt_tdes_ecb(zpk_clear, pinblock.encode_pinblock_iso_0(PIN, PAN))
        ea = (
            f"EA{under_lmk(zpk_clear, 'ZPK')}{under_lmk(PVK_CLEAR, 'PVK')}12"
            f"{block.hex().upper()}0104{ACCOUNT}{table}{DATA}{'0000'.ljust(12, 'F')}"
        ).encode()
        assert await ask(port, ea) == b"EB25"

    serve(scenario)


def test_strong_tables_other_than_the_standard_one_still_verify() -> None:
    # 8 distinct digits, each twice: the weakest table the rule accepts.
    table = "0123456701234567"

    async def scenario(port: int) -> None:
        assert await ask(port, da(table, offset_for(table))) == b"DB00"

    serve(scenario)


def encrypted_table(table: str) -> str:
    """payShield's encrypted form, computed independently: 3DES-ECB of the 8-byte table under
    LMK pair 18-19 with variant 1 (A6) in byte 0."""
    return des.encrypt_tdes_ecb(lmk_pair(18, 1), bytes.fromhex(table)).hex().upper()


def test_tables_held_by_the_hsm_are_used_by_index() -> None:
    lmk = Lmk.test()
    held = {"000": STANDARD, "01A": "9876543210987654"}
    core = HsmCore(lmk, dec_tables=DecTables(lmk, "clear", held))

    async def scenario(port: int) -> None:
        assert await ask(port, da("K000", offset_for(STANDARD))) == b"DB00"
        assert await ask(port, da("K01A", offset_for(held["01A"]))) == b"DB00"
        assert await ask(port, da("K01A", offset_for(STANDARD))) == b"DB01"
        assert await ask(port, da("K002", "0000")) == b"DB21"  # nothing held there

    serve(scenario, core)
    with pytest.raises(ValueError, match="decimalisation table 001: weak"):
        DecTables(lmk, held={"001": "0000000000000000"})


def test_the_default_hsm_holds_the_standard_table_at_index_000() -> None:
    async def scenario(port: int) -> None:
        assert await ask(port, da("K000", offset_for(STANDARD))) == b"DB00"

    serve(scenario)


def test_mode_held_takes_a_clear_table_only_if_the_hsm_holds_it() -> None:
    lmk = Lmk.test()
    core = HsmCore(lmk, dec_tables=DecTables(lmk, "held"))
    other = "9876543210987654"  # strong, but not held

    async def scenario(port: int) -> None:
        assert await ask(port, da(STANDARD, offset_for(STANDARD))) == b"DB00"
        assert await ask(port, da(other, offset_for(other))) == b"DB25"
        # a strong table one digit away from the held one (the differential attack's probe)
        assert await ask(port, da("1123456789012345", "0000")) == b"DB25"

    serve(scenario, core)


def test_mode_encrypted_takes_tables_encrypted_under_lmk_18_19_variant_1() -> None:
    lmk = Lmk.test()
    core = HsmCore(lmk, authorised=True, dec_tables=DecTables(lmk, "encrypted"))
    # ED (console command here a core method, authorised state) agrees with psec.
    assert core.encrypt_decimalisation_table(STANDARD) == encrypted_table(STANDARD)
    with pytest.raises(Exception, match="HSM error 25"):
        core.encrypt_decimalisation_table("0000000000000000")

    async def scenario(port: int) -> None:
        enc = encrypted_table(STANDARD)
        assert await ask(port, da(enc, offset_for(STANDARD))) == b"DB00"
        assert await ask(port, da(enc, offset_for(STANDARD, "1111"))) == b"DB01"
        # a weak table encrypted by someone holding the LMK is still refused
        assert await ask(port, da(encrypted_table("0000000000000000"), PIN)) == b"DB25"
        # a clear table where an encrypted one is expected: decrypts to garbage, refused
        assert await ask(port, da(STANDARD, offset_for(STANDARD))) == b"DB25"
        assert await ask(port, da("K000", offset_for(STANDARD))) == b"DB00"

    serve(scenario, core)
    unauthorised = HsmCore(lmk)
    with pytest.raises(Exception, match="HSM error 17"):
        unauthorised.encrypt_decimalisation_table(STANDARD)


def test_failed_verifications_past_the_limit_raise_one_alarm_without_the_pan(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lmk = Lmk.test()
    audit = Audit()
    audit_path = attach_file(tmp_path, audit)
    now = [1000.0]
    watch = PinFailureWatch(lmk, audit, limit=3, window=60.0, clock=lambda: now[0])
    core = HsmCore(lmk, audit=audit, pin_watch=watch)
    good = offset_for(STANDARD)
    wrong = offset_for(STANDARD, "1111")

    async def scenario(port: int) -> None:
        for _ in range(3):  # up to the limit: no alarm
            assert await ask(port, da(STANDARD, wrong)) == b"DB01"
        assert not [r for r in caplog.records if r.name == "switch.hsm.alarm"]
        assert await ask(port, da(STANDARD, good)) == b"DB00"  # successes are not failures
        assert not [r for r in caplog.records if r.name == "switch.hsm.alarm"]
        assert await ask(port, da(STANDARD, wrong)) == b"DB01"  # the 4th failure: alarm
        for _ in range(5):  # the same burst: no further line
            assert await ask(port, da(STANDARD, wrong)) == b"DB01"
        alarms = [r for r in caplog.records if r.name == "switch.hsm.alarm"]
        assert len(alarms) == 1 and alarms[0].levelno == logging.WARNING
        now[0] += 61.0  # a new window: old failures no longer count
        for _ in range(3):
            assert await ask(port, da(STANDARD, wrong)) == b"DB01"
        assert len([r for r in caplog.records if r.name == "switch.hsm.alarm"]) == 1
        assert await ask(port, da(STANDARD, wrong)) == b"DB01"
        assert len([r for r in caplog.records if r.name == "switch.hsm.alarm"]) == 2

    with caplog.at_level(logging.WARNING, logger="switch.hsm.alarm"):
        serve(scenario, core)
    audit.close()
    trail = audit_path.read_text()
    # every failure's record counts per PVK and account (the trail itself shows the burst)
    failures = [line for line in trail.splitlines() if "cmd=DA rc=01" in line]
    assert len(failures) == 13
    account = watch.account_id(PAN)
    assert [line.rsplit("failures=", 1)[1] for line in failures] == [
        *"123456789",  # the first window
        *"1234",  # the next one
    ]
    assert all(f"account=#{account} " in line for line in failures)
    successes = [line for line in trail.splitlines() if "cmd=DA rc=00" in line]
    assert len(successes) == 1 and "account=" not in successes[0]
    alarm_lines = [line for line in trail.splitlines() if " ALARM " in line]
    assert len(alarm_lines) == 2
    assert "cmd=DA pin-failures=4 window=60s limit=3" in alarm_lines[0]
    assert f"account=#{watch.account_id(PAN)}" in alarm_lines[0]
    pvk_kcv = des.generate_kcv(PVK_CLEAR, 3).hex().upper()
    assert f"pvk-kcv={pvk_kcv}" in alarm_lines[0]
    logged = trail + "\n".join(r.getMessage() for r in caplog.records)
    for secret in (PAN, ACCOUNT, PAN[:6] + PAN[-4:], PIN):
        assert secret not in logged


def test_alarms_count_each_account_and_pvv_checks_too() -> None:
    lmk = Lmk.test()
    now = [0.0]
    watch = PinFailureWatch(lmk, Audit(), limit=2, window=10.0, clock=lambda: now[0])
    assert watch.account_id(PAN) == watch.account_id("9" + PAN)  # same 12 account digits
    assert watch.account_id(PAN) != watch.account_id("5213410012345686")
    assert not watch.failed("DC", "ABCDEF", PAN)
    assert not watch.failed("DC", "ABCDEF", PAN)
    assert not watch.failed("DC", "ABCDEF", "5213410012345686")  # another account
    assert not watch.failed("DC", "123456", PAN)  # another PVK
    assert watch.failed("EC", "ABCDEF", PAN)


def test_the_switch_core_form_k000_works_over_tcp_in_the_strictest_mode() -> None:
    """The switch's pipeline sends ``K000`` (DECIMALISATION_TABLE_REF), never a clear table;
    it verifies against an HSM that takes no clear table at all."""
    lmk = Lmk.test()
    core = HsmCore(lmk, dec_tables=DecTables(lmk, "encrypted"))

    async def scenario(port: int) -> None:
        client = TcpHsmClient("127.0.0.1", port, timeout=30.0)
        try:
            block = des.encrypt_tdes_ecb(TPK_CLEAR, pinblock.encode_pinblock_iso_0(PIN, PAN))
            tpk, pvk = under_lmk(TPK_CLEAR, "TPK"), under_lmk(PVK_CLEAR, "PVK")
            offset = offset_for(STANDARD)
            ref = DECIMALISATION_TABLE_REF
            assert await client.verify_pin_ibm(tpk, pvk, block, PAN, offset, ref, DATA)
            with pytest.raises(HsmError) as info:
                await client.verify_pin_ibm(tpk, pvk, block, PAN, offset, STANDARD, DATA)
            assert info.value.code == "25"
        finally:
            await client.close()

    assert DECIMALISATION_TABLE == STANDARD
    serve(scenario, core)


def test_switch_hsm_serve_table_options_and_encrypt_dec_table(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "switch.cli", "hsm"]
    done = subprocess.run(
        [*cli, "encrypt-dec-table", "--test-lmk", "9876543210987654"],
        capture_output=True,
        text=True,
        check=True,
    )
    encrypted = done.stdout.strip()
    assert encrypted == encrypted_table("9876543210987654")
    weak = subprocess.run(
        [*cli, "encrypt-dec-table", "--test-lmk", "0000000000000000"],
        capture_output=True,
        text=True,
    )
    assert weak.returncode == 2 and "decimalisation table: weak" in weak.stderr
    bad = subprocess.run(
        [*cli, "serve", "--test-lmk", "--state-dir", str(tmp_path), "--dec-table", "001=1"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "decimalisation table 001" in bad.stderr

    proc = serve_process(
        tmp_path, 0, "--test-lmk", "--dec-tables", "encrypted", "--dec-table", "0AB=" + STANDARD
    )
    try:
        port = listening(proc)  # port 0: never one picked free and taken meanwhile

        async def scenario() -> None:
            table = "9876543210987654"
            assert await ask(port, da(encrypted, offset_for(table))) == b"DB00"
            assert await ask(port, da("K0AB", offset_for(STANDARD))) == b"DB00"
            assert await ask(port, da(STANDARD, offset_for(STANDARD))) == b"DB25"

        asyncio.run(asyncio.wait_for(scenario(), 30))
    finally:
        output = stop(proc)
    assert "decimalisation tables: mode encrypted, held at 000,0AB" in output


def test_the_switch_verifies_ibm_offset_pins_through_a_tcp_hsm_taking_no_clear_table(
    state: Path,
) -> None:
    """``switch run --hsm tcp://...``: the core's DA carries ``K000`` and validation data a
    payShield's 12A field can carry, against an HSM in its strictest table mode."""
    from switch.core import demo
    from switch.core import testing as t
    from switch.core.domain import luhn_complete
    from switch.core.model import ResponseCode as RC
    from switch.core.pipeline import ibm_validation_data
    from switch.core.service import SwitchCore

    pan = luhn_complete("628058777000001")
    data = ibm_validation_data(pan)
    assert data == pan[-13:-2] + pan[-6:-1]  # 11 account digits + N (the last 5) expanded
    offset = pin.generate_ibm3624_offset(
        bytes.fromhex(demo.PVK_CLEAR), STANDARD, "2468", data, 0, 16, "F"
    )

    async def main() -> None:
        await add_ibm_offset_card(state, pan, offset, "0009000000-01", 10**6)
        lmk = Lmk.load(state / "lmk.json")
        core = HsmCore(lmk, dec_tables=DecTables(lmk, "encrypted"))
        server = await start_hsm_server(lmk, "127.0.0.1", 0, core=core)
        client = TcpHsmClient("127.0.0.1", bound_port(server), timeout=30.0)
        switch = await SwitchCore.open(state, hsm=client)
        try:
            ok = await switch.authorize(t.withdrawal(pan=pan, pin="2468", amount=100_000))
            assert ok.response_code is RC.APPROVED, ok
            bad = await switch.authorize(t.withdrawal(pan=pan, pin="2469", amount=100_000))
            assert bad.response_code is RC.INCORRECT_PIN, bad
        finally:
            await switch.close()
            await client.close()
            await stop_hsm_server(server)

    asyncio.run(asyncio.wait_for(main(), 30))
