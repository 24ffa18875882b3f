"""The fixed, documented demo data set, and its seeding into a fresh store.

Everything here is TEST DATA: the keys are public test keys (clear components printed by
``switch demo show --json``), the PINs are printed, and no real card uses these numbers.

* On-us BIN: ``628058`` (Edahabia-style 16-digit PANs, valid Luhn). Acquirer id ``628058``.
* Remote issuer route: BIN ``627000`` -> remote issuer ``remote-bank`` (reached only once the
  ISO 8583 issuer client registers itself under that name; otherwise 91).
* Cards (PIN, expiry YYMM, status, opening balance of the CCP account):

  ======================  ====  ======  =========  ==================
  PAN                     PIN   expiry  status     balance (DZD)
  ======================  ====  ======  =========  ==================
  6280580000000017        1234  3012    active     150,000.00
  6280580000000025        4321  3012    active     5,000.00
  6280580000000033        1111  3012    delivered  20,000.00 (not activated)
  6280580000000041        2222  3012    lost       20,000.00
  6280580000000058        3333  3012    stolen     20,000.00
  6280580000000066        4444  2301    expired    20,000.00
  6280580000000074        5555  3012    blocked    20,000.00
  6280580000000082        6666  3012    active     1,000,000.00
  ======================  ====  ======  =========  ==================

  CVV2s are computed from the demo CVK at seeding (CW) and printed by ``demo show``.
* Terminals: ``GAB00001`` (our ATM, Alger Grande Poste), ``GAB90001`` (another bank's ATM,
  acquirer ``000099``), ``POS00001`` (fuel station POS), ``GUICHET1`` (post-office counter
  PIN pad), ``VT-ECOM1`` (virtual terminal of the e-commerce merchant). PIN blocks ISO 9564
  format 0 (payShield ``01``) under each terminal's TPK.
* Merchants ``M-ECOM-001`` (e-commerce, MCC 5399) and ``M-FUEL-001`` (fuel, MCC 5541) with
  API keys; billers ``SONELGAZ`` (electricity & gas), ``ADE`` (water), ``AT`` (telephone)
  with open bills.

Keys go into the store only as cryptograms under the LMK, formed by the HSM from the clear
components below (FK in authorised state); PVVs are generated with BA + DG, so the clear PINs
exist only in this documentation and inside the HSM call.
"""

# ruff: noqa: E501 -- the demo tables read best one record per line
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from switch.core.domain import (
    ONUS,
    Account,
    AccountKind,
    Bill,
    Biller,
    BinRoute,
    Card,
    CardStatus,
    Merchant,
    Terminal,
    hash_api_key,
)
from switch.hsm.client import HsmClient, KeyType
from switch.store.api import Store

ON_US_BIN = "628058"
ACQUIRER_ID = "628058"
REMOTE_BIN = "627000"
REMOTE_ISSUER = "remote-bank"
CURRENCY = 12

# Clear test key components (one component each; public test values, never for production).
PVK_CLEAR = "0123456789ABCDEFFEDCBA9876543210"
CVK_CLEAR = "0123456789ABCDEFFEDCBA9876543210"
MK_AC_CLEAR = "9E15204313F7318ACB79B90BD986AD29"
PVKI = 1


@dataclass(frozen=True, slots=True)
class DemoCard:
    pan: str
    pin: str
    expiry: str
    status: CardStatus
    balance: int
    holder: str
    phone: str
    account: str
    service_code: str = "201"


@dataclass(frozen=True, slots=True)
class DemoTerminal:
    terminal_id: str
    kind: str
    acquirer_id: str
    own: bool
    location: str
    tpk_clear: str
    tak_clear: str
    pin_block_format: str = "01"


@dataclass(frozen=True, slots=True)
class DemoMerchant:
    merchant_id: str
    name: str
    mcc: str
    city: str
    api_key: str
    terminal_id: str


CARDS = (
    DemoCard("6280580000000017", "1234", "3012", CardStatus.ACTIVE, 15_000_000, "Amina Benali", "+213550000001", "0001000001-17"),
    DemoCard("6280580000000025", "4321", "3012", CardStatus.ACTIVE, 500_000, "Karim Haddad", "+213550000002", "0001000002-25"),
    DemoCard("6280580000000033", "1111", "3012", CardStatus.DELIVERED, 2_000_000, "Yacine Cherif", "+213550000003", "0001000003-33"),
    DemoCard("6280580000000041", "2222", "3012", CardStatus.LOST, 2_000_000, "Nadia Bouzid", "+213550000004", "0001000004-41"),
    DemoCard("6280580000000058", "3333", "3012", CardStatus.STOLEN, 2_000_000, "Samir Ouali", "+213550000005", "0001000005-58"),
    DemoCard("6280580000000066", "4444", "2301", CardStatus.EXPIRED, 2_000_000, "Leila Mansouri", "+213550000006", "0001000006-66"),
    DemoCard("6280580000000074", "5555", "3012", CardStatus.BLOCKED, 2_000_000, "Rachid Kaci", "+213550000007", "0001000007-74"),
    DemoCard("6280580000000082", "6666", "3012", CardStatus.ACTIVE, 100_000_000, "Farida Saadi", "+213550000008", "0001000008-82"),
)  # fmt: skip

REMOTE_CARD_PAN = "6270000000000018"  # routed to REMOTE_ISSUER; PIN 1234 on the remote side

TERMINALS = (
    DemoTerminal("GAB00001", "atm", ACQUIRER_ID, True, "Alger Grande Poste", "11111111111111112222222222222222", "33333333333333334444444444444444"),
    DemoTerminal("GAB90001", "atm", "000099", False, "Oran Banque Partenaire", "5555555555555555666666666666666E", "", "01"),
    DemoTerminal("POS00001", "pos", ACQUIRER_ID, True, "Station Naftal Hydra", "7777777777777777888888888888888A", ""),
    DemoTerminal("GUICHET1", "counter", ACQUIRER_ID, True, "Bureau de poste Didouche", "99999999999999990000000000000000", ""),
    DemoTerminal("VT-ECOM1", "virtual", ACQUIRER_ID, True, "Boutique Djazair en ligne", "", ""),
)  # fmt: skip

MERCHANTS = (
    DemoMerchant("M-ECOM-001", "Boutique Djazair", "5399", "Alger", "demo-key-ecom-001-7f3a9c2e5b1d4f60", "VT-ECOM1"),
    DemoMerchant("M-FUEL-001", "Station Naftal Hydra", "5541", "Alger", "demo-key-fuel-001-2b8e6d4a9c0f1e37", "POS00001"),
)  # fmt: skip

BILLERS = (
    (Biller("SONELGAZ", "Sonelgaz", "electricity_gas", 0, r"\d{12}"), (("000000000001", 345_000), ("000000000002", 1_210_050))),
    (Biller("ADE", "Algérienne des Eaux", "water", 0, r"\d{10}"), (("0000000001", 98_000),)),
    (Biller("AT", "Algérie Télécom", "telephone", 0, r"0\d{8}"), (("021000001", 250_000),)),
)  # fmt: skip

BIN_ROUTES = (BinRoute(ON_US_BIN, ONUS), BinRoute(REMOTE_BIN, REMOTE_ISSUER))


async def seed_demo(store: Store, hsm: HsmClient, pan_key: bytes) -> None:
    """Load the demo set into an empty store (``hsm`` must be in the authorised state)."""
    import hashlib
    import hmac

    pvk, cvk, mk_ac = await issuer_keys(hsm)

    next_id = 1

    def account(
        number: str, kind: AccountKind, holder: str = "", phone: str = "", balance: int = 0
    ) -> int:
        nonlocal next_id
        aid = next_id
        next_id += 1
        store.insert_account(
            Account(aid, number, kind, holder, phone, CURRENCY, balance, 0, kind is AccountKind.GL)
        )
        return aid

    for gl in ("GL-FEES", "GL-INTERBANK-ATM", "GL-INTERBANK-POS"):
        account(gl, AccountKind.GL, gl)
    for i, c in enumerate(CARDS, start=1):
        aid = account(c.account, AccountKind.CCP, c.holder, c.phone, c.balance)
        lmk_pin = await hsm.encrypt_pin(c.pin, c.pan)
        pvv = await hsm.generate_pvv(pvk, lmk_pin, c.pan, PVKI)
        # CW: the CVV2 the HSM derives must be the one ``demo show`` prints (never stored)
        if await hsm.generate_cvv(cvk, c.pan, c.expiry, "000") != cvv2(c.pan, c.expiry):
            raise RuntimeError("demo CVK: the HSM's CVV2 differs from the documented one")
        store.insert_card(
            Card(
                card_id=i,
                pan_hash=hmac.new(pan_key, c.pan.encode(), hashlib.sha256).digest(),
                pan_first6=c.pan[:6],
                pan_last4=c.pan[-4:],
                account_id=aid,
                product="EDAHABIA_CLASSIC",
                expiry=c.expiry,
                service_code=c.service_code,
                pan_sequence="00",
                pvki=PVKI,
                pvv=pvv,
                ibm_offset="",
                pvk=pvk,
                cvk=cvk,
                mk_ac=mk_ac,
                status=c.status,
            )
        )
    for t in TERMINALS:
        cash = account(f"GL-CASH-{t.terminal_id}", AccountKind.GL, t.location)
        store.insert_terminal(await terminal_record(hsm, t, cash))
    for m in MERCHANTS:
        settle = account(f"MERCHANT-{m.merchant_id}", AccountKind.GL, m.name)
        store.insert_merchant(merchant_record(m, settle))
    for b, bills in BILLERS:
        settle = account(f"BILLER-{b.biller_id}", AccountKind.GL, b.name)
        store.insert_biller(Biller(b.biller_id, b.name, b.category, settle, b.reference_pattern))
        for ref, due in bills:
            store.insert_bill(Bill(b.biller_id, ref, due))
    for r in BIN_ROUTES:
        store.insert_bin_route(r)
    store.put_setting("demo_set", "1")
    store.flush_admin()


async def issuer_keys(hsm: HsmClient) -> tuple[str, str, str]:
    """The demo issuer's PVK, CVK and MK-AC under the LMK, formed from the clear test
    components (``hsm`` authorised); the load data set (``switch.loaddata``) uses them too."""
    pvk = (await hsm.form_key_from_clear_components(KeyType.PVK, [PVK_CLEAR])).key_under_lmk
    cvk = (await hsm.form_key_from_clear_components(KeyType.CVK, [CVK_CLEAR])).key_under_lmk
    mk_ac = (await hsm.form_key_from_clear_components(KeyType.MK_AC, [MK_AC_CLEAR])).key_under_lmk
    return pvk, cvk, mk_ac


async def terminal_record(hsm: HsmClient, t: DemoTerminal, cash_account_id: int) -> Terminal:
    """The store's record of ``t``: its clear test TPK / TAK formed under the LMK by ``hsm``
    (authorised), so PIN blocks made with the clear key verify. Shared with the load data set,
    whose terminals are seeded exactly as the demo's."""
    tpk = tak = ""
    if t.tpk_clear:
        tpk = (await hsm.form_key_from_clear_components(KeyType.TPK, [t.tpk_clear])).key_under_lmk
    if t.tak_clear:
        tak = (await hsm.form_key_from_clear_components(KeyType.TAK, [t.tak_clear])).key_under_lmk
    return Terminal(
        t.terminal_id, t.kind, t.acquirer_id, t.own, t.location, tpk, tak, t.pin_block_format,
        cash_account_id,
    )  # fmt: skip


def merchant_record(m: DemoMerchant, settlement_account_id: int) -> Merchant:
    """The store's record of ``m``: only a hash of its API key is kept."""
    return Merchant(
        m.merchant_id, m.name, m.mcc, m.city, settlement_account_id, hash_api_key(m.api_key),
        m.terminal_id,
    )  # fmt: skip


def cvv2(pan: str, expiry: str) -> str:
    """The demo card's CVV2 (service code 000) from the clear test CVK."""
    import switch_native

    return switch_native.cvv_generate(bytes.fromhex(CVK_CLEAR), pan, expiry, "000")


def demo_document() -> dict[str, Any]:
    """The demo set as printed by ``switch demo show --json`` (docs/architecture.md §3)."""
    import switch_native

    def kcv(hex_key: str) -> str:
        return switch_native.key_check_value(bytes.fromhex(hex_key)).hex().upper()

    return {
        "warning": "TEST DATA AND TEST KEYS ONLY",
        "on_us_bin": ON_US_BIN,
        "acquirer_id": ACQUIRER_ID,
        "currency": CURRENCY,
        "cards": [
            {
                "pan": c.pan,
                "pin": c.pin,
                "expiry": c.expiry,
                "cvv2": cvv2(c.pan, c.expiry),
                "service_code": c.service_code,
                "status": c.status.value,
                "holder": c.holder,
                "phone": c.phone,
                "account": c.account,
                "balance": c.balance,
            }
            for c in CARDS
        ],
        "remote_cards": [{"pan": REMOTE_CARD_PAN, "issuer": REMOTE_ISSUER}],
        "terminals": [
            {
                "terminal_id": t.terminal_id,
                "kind": t.kind,
                "acquirer_id": t.acquirer_id,
                "own": t.own,
                "location": t.location,
                "tpk": t.tpk_clear if t.tpk_clear else None,
                "tpk_kcv": kcv(t.tpk_clear) if t.tpk_clear else None,
                "tak": t.tak_clear if t.tak_clear else None,
                "pin_block_format": t.pin_block_format,
            }
            for t in TERMINALS
        ],
        "merchants": [
            {
                "merchant_id": m.merchant_id,
                "name": m.name,
                "mcc": m.mcc,
                "city": m.city,
                "api_key": m.api_key,
                "terminal_id": m.terminal_id,
            }
            for m in MERCHANTS
        ],
        "billers": [
            {
                "biller_id": b.biller_id,
                "name": b.name,
                "category": b.category,
                "reference_pattern": b.reference_pattern,
                "bills": [{"reference": r, "amount_due": a} for r, a in bills],
            }
            for b, bills in BILLERS
        ],
        "bin_routes": [{"prefix": r.prefix, "destination": r.destination} for r in BIN_ROUTES],
        "keys": {
            "pvk": PVK_CLEAR,
            "pvki": PVKI,
            "cvk": CVK_CLEAR,
            "mk_ac": MK_AC_CLEAR,
            "pin_block_format": "ISO 9564 format 0 (payShield 01)",
        },
    }
