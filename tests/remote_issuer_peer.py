"""A second switch acting as the remote issuer of BIN 627000: ``switch run`` in its own process.

:func:`start_issuer_switch` seeds a state directory on first start with the issuer's own
small data set (BIN 627000 on-us, card 6270000000000018 / PIN 1234) through the store's
public API -- ``SwitchCore.open`` seeds the demo set only into an *empty* store, so the real
defaults stay untouched -- then runs ``switch run`` on it (real ISO 8583 listener, core, SMS
worker, gRPC) on free ports. SIGTERM stops it cleanly; the tests SIGSTOP/SIGCONT it to play
an issuer that stops answering.

How the link's keys are known to this issuer: as a real issuer, it does not know the
acquirer's ATMs (no terminal is recorded here). It knows the *acquirers* and the zone keys
exchanged with them: ``switch run --interchange STATE/interchange.toml`` with an
``[acquirers.628058]`` table (the demo acquirer, field 32) whose ``zpk`` is formed from
:data:`LINK_ZPK_CLEAR` -- the same clear test value the acquirer forms its remote-issuer ZPK
from -- so the issuer verifies the translated PIN block under it with EC. ``mac=True`` adds a
``zak`` formed from :data:`LINK_ZAK_CLEAR`: the issuer then refuses unsigned requests (30)
and signs its answers. Requests the acquirer forwards for another network
(:data:`NETWORK_ACQUIRER` in field 32) travel on the same link, under the same keys, so a
second table ``[acquirers.000077]`` carries them too. ``zpk_clear`` configures another ZPK
(a key ceremony gone wrong: every PIN fails, tested).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from switch.core.domain import ONUS, Account, AccountKind, BinRoute, Card, CardStatus
from switch.core.ledger_accounts import GL_FEES, GL_INTERBANK_ATM, GL_INTERBANK_POS
from switch.hsm.client import KeyType
from switch.hsm.inprocess import InProcessHsm
from switch.hsm.lmk import Lmk
from switch.store import ENV_STORE
from switch.store.sqlite import SqliteStore

ISSUER_BIN = "627000"
CARD_PAN = "6270000000000018"
CARD_PIN = "1234"
CARD_BALANCE = 10_000_000  # 100,000.00 DZD
ACQUIRER_TERMINAL = "GAB00001"  # the demo acquirer's ATM (not recorded at this issuer)
ACQUIRER_ID = "628058"  # the demo acquirer (field 32): [acquirers.628058]
NETWORK_TERMINAL = "NETW0001"  # a terminal behind another acquirer network (PIN under its ZPK)
NETWORK_ACQUIRER = "000077"  # that network's field 32: [acquirers.000077]
#: Clear test value of the interchange zone PIN key (both sides form it from this component).
LINK_ZPK_CLEAR = "0123456789ABCDEF0123456789ABCDEF"
#: Clear test value of the interchange zone MAC key (both sides form it from this component).
LINK_ZAK_CLEAR = "4C4C4C4C4C4C4C4C5B5B5B5B5B5B5B5B"
INTERCHANGE_FILE = "interchange.toml"  # written into the issuer's state directory
PAN_KEY = bytes(range(32))  # this issuer's PAN-hash key (test value)
PVK_CLEAR = "89ABCDEF0123456776543210FEDCBA98"


async def seed(state_dir: Path) -> None:
    """The issuer's data set, written once into a fresh store."""
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "pan.key").write_text(PAN_KEY.hex())
    hsm = InProcessHsm(Lmk.load_or_create(state_dir / "lmk.json"), authorised=True)
    store = SqliteStore(state_dir / "switch.db")
    await store.open()
    try:
        for aid, code in enumerate((GL_FEES, GL_INTERBANK_ATM, GL_INTERBANK_POS), start=1):
            store.insert_account(Account(aid, code, AccountKind.GL, code, "", 12, 0, 0, True))
        store.insert_account(
            Account(4, "0009000001-18", AccountKind.CCP, "Remote Holder", "+213550009001",
                    12, CARD_BALANCE, 0, False)
        )  # fmt: skip
        pvk = (await hsm.form_key_from_clear_components(KeyType.PVK, [PVK_CLEAR])).key_under_lmk
        cvk = (await hsm.form_key_from_clear_components(KeyType.CVK, [PVK_CLEAR])).key_under_lmk
        mk = (await hsm.form_key_from_clear_components(KeyType.MK_AC, [PVK_CLEAR])).key_under_lmk
        pvv = await hsm.generate_pvv(pvk, await hsm.encrypt_pin(CARD_PIN, CARD_PAN), CARD_PAN, 1)
        pan_hash = hmac.new(PAN_KEY, CARD_PAN.encode(), hashlib.sha256).digest()
        store.insert_card(
            Card(1, pan_hash, CARD_PAN[:6], CARD_PAN[-4:], 4, "EDAHABIA_CLASSIC", "3012", "201",
                 "00", 1, pvv, "", pvk, cvk, mk, CardStatus.ACTIVE)
        )  # fmt: skip
        store.insert_bin_route(BinRoute(ISSUER_BIN, ONUS))
        store.flush_admin()
    finally:
        await store.close()


async def write_interchange(
    state_dir: Path, zpk_clear: str = LINK_ZPK_CLEAR, mac: bool = False
) -> Path:
    """``state_dir/interchange.toml``: the acquirers this issuer knows, with their zone keys
    formed (key ceremony) from the clear test components under this issuer's LMK."""
    hsm = InProcessHsm(Lmk.load_or_create(state_dir / "lmk.json"), authorised=True)
    zpk = (await hsm.form_key_from_clear_components(KeyType.ZPK, [zpk_clear])).key_under_lmk
    zak = (await hsm.form_key_from_clear_components(KeyType.ZAK, [LINK_ZAK_CLEAR])).key_under_lmk
    lines = []
    for acquirer_id, name in ((ACQUIRER_ID, "demo acquirer"), (NETWORK_ACQUIRER, "network")):
        lines += [f"[acquirers.{acquirer_id}]", f'name = "{name}"', f'zpk = "{zpk}"']
        lines += [f'zak = "{zak}"'] if mac else []
        lines.append("")
    path = state_dir / INTERCHANGE_FILE
    path.write_text("\n".join(lines))
    return path


def start_issuer_switch(
    state_dir: Path,
    iso_port: int = 0,
    extra_listeners: tuple[str, ...] = (),
    *,
    zpk_clear: str = LINK_ZPK_CLEAR,
    mac: bool = False,
) -> tuple[subprocess.Popen[bytes], list[int]]:
    """Seed ``state_dir`` (first time) and start ``switch run`` on it as the issuer process;
    returns the process and its ISO 8583 ports (main listener first, then each of
    ``extra_listeners``, e.g. ``"0:binary87"``) once it says ready. Its console (SMS alerts
    included) goes to ``state_dir/console.log`` so no pipe can fill up and stall it.
    ``zpk_clear`` / ``mac``: the acquirers' zone keys (see the module docstring)."""
    if not (state_dir / "switch.db").exists():
        asyncio.run(seed(state_dir))
    # in a thread of its own: the tests also restart the issuer from inside a running loop
    with ThreadPoolExecutor(1) as pool:
        interchange = pool.submit(asyncio.run, write_interchange(state_dir, zpk_clear, mac)).result(
            timeout=30
        )
    log = state_dir / "console.log"
    offset = log.stat().st_size if log.exists() else 0
    # its own SQLite store (seeded above), whatever store the test's acquirer runs on
    env = {k: v for k, v in os.environ.items() if k != ENV_STORE}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "switch.cli", "run", "--state-dir", str(state_dir),
             "--iso-port", str(iso_port), "--grpc-port", "0", "--log-level", "warning",
             "--http-port", "0", "--interchange", str(interchange),
             *(arg for e in extra_listeners for arg in ("--iso-listener", e))],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = log.read_bytes()[offset:].decode(errors="replace")
        if "switch ready" in text:
            found = re.findall(r"ISO 8583 acquirer listener on [\d.]+:(\d+)", text)
            if len(found) == 1 + len(extra_listeners):
                return proc, [int(p) for p in found]
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"issuer switch did not start: {log.read_bytes()[offset:][-2000:]!r}")
