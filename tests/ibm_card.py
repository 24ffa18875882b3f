"""A card whose PIN is verified by the IBM 3624 offset method, written straight into a test
store: no import path makes one, and three test modules need it alike."""

from __future__ import annotations

from pathlib import Path

from switch.core.domain import Account, AccountKind, Card, CardStatus
from switch.core.service import SwitchCore
from switch.store.sqlite import SqliteStore


async def add_ibm_offset_card(
    state: Path, pan: str, offset: str, account_number: str, balance: int
) -> None:
    """Card 900 (``pan``, IBM 3624 ``offset``, ACTIVE, the keys of demo card 1) on CCP account
    900 (``account_number``, ``balance`` in minor units) in the store of ``state``."""
    probe = await SwitchCore.open(state)  # only to hash the PAN with the store's key
    pan_hash = probe._p.pan_hash(pan)
    await probe.close()
    store = SqliteStore(state / "switch.db")
    await store.open()
    pvk, cvk, mk_ac = store.query("SELECT pvk, cvk, mk_ac FROM cards WHERE card_id = 1")[0]
    store.insert_account(Account(900, account_number, AccountKind.CCP, "IBM", "", 12, balance))
    store.insert_card(
        Card(900, pan_hash, pan[:6], pan[-4:], 900, "EDAHABIA_CLASSIC", "3012", "201", "00",
             0, "", offset, pvk, cvk, mk_ac, CardStatus.ACTIVE)
    )  # fmt: skip
    store.flush_admin()
    await store.close()
