"""``switch loaddata``: a data set made for load tests, and the files the Locust users read.

The demo data set has eight cards with the Edahabia limits (50,000 DZD and 20 withdrawals a
day at ATMs): a load test on it measures declines (51, 61, 65), not the switch. This command
adds, to a state directory (new or holding only the demo set):

* ``--cards N`` cards and their CCP accounts, product ``LOAD`` (limits no load test reaches,
  100,000,000.00 DZD each), loaded through the card import (``switch import accounts`` then
  ``switch import cards``), with PVVs under the demo issuer's test PVK;
* ``--terminals M`` ATMs of our own acquirer, each with its own random test TPK formed under
  the LMK as the demo terminals are (``switch.core.demo.terminal_record``);
* ``--merchants K`` e-commerce merchants with their API keys, and a biller with ``--bills``
  open bills for bill payments.

and writes to ``--out DIR`` (0700, files 0600: they hold PINs, CVV2s, clear TPKs and API
keys -- TEST DATA, as the demo's): ``products.toml`` (the shipped products plus ``LOAD``; give
it to ``switch run --config``), ``cards.csv`` (PAN, PIN, expiry, CVV2), ``terminals.csv``
(terminal id, acquirer id, clear TPK), ``merchants.csv`` (merchant id, API key), ``bills.csv``
(biller, reference, amount due), and the import's inputs under ``import/``. The ``read_*``
functions below are what the locustfiles use to read them back.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import secrets
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from switch.store import ENV_STORE, redacted, store_arg

_T = TypeVar("_T")
LOAD_PRODUCT = "LOAD"
LOAD_BILLER = "LOADBILL"
LOAD_EXPIRY = "4912"
LOAD_BALANCE = 10_000_000_000  # 100,000,000.00 DZD: thousands of withdrawals per card
USAGE_ERROR = 2

# Limits no load test reaches (the limits engine still checks each of them on every
# authorization, so its cost is measured); fees as the Edahabia classic product's.
_LIMITS = {
    name: "daily_amount = 1_000_000_000_000\nper_txn = 10_000_000_000\ndaily_count = 1_000_000_000"
    for name in (
        "atm_cash", "card_payment", "counter_cash", "ecommerce", "bill_payment", "fuel", "transfer"
    )
}  # fmt: skip
LOAD_PRODUCT_TOML = f"""
# Added by `switch loaddata`: the product of the load data set's cards.
[[product]]
code = "{LOAD_PRODUCT}"
name = "Load test card"
currency = 12
pin_length = 4
pin_tries = 3
otp_tries = 3
allow_transfers = true
allow_ecommerce = true

[[product.schedule]]
effective_from = 2024-01-01
min_atm_withdrawal = 100_000
fee_own_atm = 3_000
fee_other_atm = 3_500
fee_balance_inquiry = 0
""" + "".join(f"\n[product.schedule.limits.{k}]\n{v}\n" for k, v in _LIMITS.items())


class LoadDataError(ValueError):
    """A load data file or option is wrong; the message names the file, line and column."""


@dataclass(frozen=True, slots=True)
class LoadCard:
    pan: str
    pin: str
    expiry: str
    cvv2: str


@dataclass(frozen=True, slots=True)
class LoadTerminal:
    terminal_id: str
    acquirer_id: str
    tpk: str  # clear test TPK (hex), for the PIN blocks


@dataclass(frozen=True, slots=True)
class LoadMerchant:
    merchant_id: str
    api_key: str


@dataclass(frozen=True, slots=True)
class LoadBill:
    biller_id: str
    reference: str
    amount: int  # minor units, the amount due


# ---- reading the files back (the Locust users) -----------------------------------------------


def _rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        fh = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise LoadDataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    with fh:
        reader = csv.DictReader(fh)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise LoadDataError(f"{path}: column {missing[0]!r} missing from the header")
        for row in reader:
            for c in columns:
                if not row.get(c):
                    raise LoadDataError(f"{path}:{reader.line_num}: {c}: empty")
            yield reader.line_num, row


def _nonempty(path: Path, items: list[_T]) -> list[_T]:
    if not items:
        raise LoadDataError(f"{path}: no records")
    return items


def read_cards(path: Path) -> list[LoadCard]:
    cols = ("pan", "pin", "expiry", "cvv2")
    return _nonempty(path, [LoadCard(*(r[c] for c in cols)) for _, r in _rows(path, cols)])


def read_terminals(path: Path) -> list[LoadTerminal]:
    cols = ("terminal_id", "acquirer_id", "tpk")
    out = []
    for line, r in _rows(path, cols):
        try:
            bytes.fromhex(r["tpk"])
        except ValueError:
            raise LoadDataError(f"{path}:{line}: tpk: hex expected") from None
        out.append(LoadTerminal(*(r[c] for c in cols)))
    return _nonempty(path, out)


def read_merchants(path: Path) -> list[LoadMerchant]:
    cols = ("merchant_id", "api_key")
    return _nonempty(path, [LoadMerchant(*(r[c] for c in cols)) for _, r in _rows(path, cols)])


def read_bills(path: Path) -> list[LoadBill]:
    out = []
    for line, r in _rows(path, ("biller_id", "reference", "amount")):
        if not (r["amount"].isascii() and r["amount"].isdigit()):
            raise LoadDataError(f"{path}:{line}: amount: integer minor units expected")
        out.append(LoadBill(r["biller_id"], r["reference"], int(r["amount"])))
    return _nonempty(path, out)


# ---- building the data set ---------------------------------------------------------------------


def _luhn_complete(body: str) -> str:
    """``body`` + its Luhn check digit."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def load_pan(i: int) -> str:
    """The i-th load card: on-us BIN, then 9 (no demo card starts so), 8 digits, Luhn."""
    from switch.core.demo import ON_US_BIN

    return _luhn_complete(f"{ON_US_BIN}9{i:08d}")


def _private_writer(files: ExitStack, path: Path) -> Any:
    """A CSV writer on a new file only its owner reads (it holds test secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return csv.writer(files.enter_context(open(fd, "w", newline="", encoding="utf-8")))


def _write_text(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


@dataclass(frozen=True, slots=True)
class Sizes:
    cards: int
    terminals: int
    merchants: int
    bills: int


def write_products(out: Path) -> Path:
    """``out/products.toml``: the shipped product configuration plus the LOAD product."""
    shipped = resources.files("switch.core").joinpath("products.toml").read_text("utf-8")
    path = out / "products.toml"
    _write_text(path, shipped.rstrip("\n") + "\n" + LOAD_PRODUCT_TOML)
    return path


async def seed_network(state_dir: Path, config_path: Path, out: Path, sizes: Sizes,
                       rng: random.Random) -> None:  # fmt: skip
    """Terminals, merchants, the biller and its bills, straight into the store (the card
    import loads cards and accounts only); a new state directory gets the demo set first
    (its BIN routes make our BIN on-us). Refused if the store already holds a load set."""
    import switch_native

    from switch.config import load_config
    from switch.core import demo
    from switch.core.domain import Account, AccountKind, Bill, Biller
    from switch.core.service import SwitchCore
    from switch.hsm.inprocess import InProcessHsm
    from switch.hsm.lmk import Lmk

    core = await SwitchCore.open(state_dir, config=load_config(config_path))
    files = ExitStack()
    try:
        store = core.store
        if store.setting("load_set") is not None:
            raise LoadDataError(
                f"state_dir: {state_dir} already holds a load data set; give a new --state-dir"
            )
        if not any(r.prefix == demo.ON_US_BIN and r.on_us for r in store.bin_routes()):
            raise LoadDataError(
                f"state_dir: {state_dir} routes no BIN {demo.ON_US_BIN} to us (a store made by "
                "switch import alone?); give a new --state-dir"
            )
        hsm = InProcessHsm(Lmk.load(state_dir / "lmk.json"), authorised=True)
        (next_id,) = store.query("SELECT COALESCE(MAX(account_id), 0) + 1 FROM accounts")[0]

        def gl(number: str, name: str) -> int:
            nonlocal next_id
            aid = int(next_id)
            next_id = aid + 1
            store.insert_account(
                Account(aid, number, AccountKind.GL, name, "", demo.CURRENCY, 0, 0, True)
            )
            return aid

        terminals = _private_writer(files, out / "terminals.csv")
        terminals.writerow(["terminal_id", "acquirer_id", "tpk"])
        for i in range(1, sizes.terminals + 1):
            key = switch_native.adjust_key_parity(rng.randbytes(16)).hex().upper()
            t = demo.DemoTerminal(
                f"LGA{i:05d}", "atm", demo.ACQUIRER_ID, True, f"Load test ATM {i}", key, ""
            )
            cash = gl(f"GL-CASH-{t.terminal_id}", t.location)
            store.insert_terminal(await demo.terminal_record(hsm, t, cash))
            terminals.writerow([t.terminal_id, t.acquirer_id, key])
        merchants = _private_writer(files, out / "merchants.csv")
        merchants.writerow(["merchant_id", "api_key"])
        for i in range(1, sizes.merchants + 1):
            vt = demo.DemoTerminal(
                f"LVT{i:05d}", "virtual", demo.ACQUIRER_ID, True, f"Load shop {i}", "", ""
            )
            cash = gl(f"GL-CASH-{vt.terminal_id}", vt.location)
            store.insert_terminal(await demo.terminal_record(hsm, vt, cash))
            m = demo.DemoMerchant(
                f"M-LOAD-{i:04d}", f"Load shop {i}", "5399", "Alger",
                f"load-key-{rng.randbytes(16).hex()}", vt.terminal_id,
            )  # fmt: skip
            store.insert_merchant(demo.merchant_record(m, gl(f"MERCHANT-{m.merchant_id}", m.name)))
            merchants.writerow([m.merchant_id, m.api_key])
        if sizes.bills:
            settle = gl(f"BILLER-{LOAD_BILLER}", "Load test biller")
            store.insert_biller(
                Biller(LOAD_BILLER, "Load test biller", "electricity_gas", settle, r"\d{12}")
            )
            bills = _private_writer(files, out / "bills.csv")
            bills.writerow(["biller_id", "reference", "amount"])
            for i in range(1, sizes.bills + 1):
                amount = rng.randrange(5, 200) * 10_000  # 500 to 19,900 DZD
                store.insert_bill(Bill(LOAD_BILLER, f"{i:012d}", amount))
                bills.writerow([LOAD_BILLER, f"{i:012d}", amount])
        store.put_setting(
            "load_set",
            f"cards={sizes.cards} terminals={sizes.terminals} merchants={sizes.merchants} "
            f"bills={sizes.bills}",
        )
        store.flush_admin()
        await hsm.close()
    finally:
        files.close()
        await core.close()


def write_cards(out: Path, n: int, rng: random.Random) -> tuple[Path, Path, Path]:
    """The import's accounts and cards files, and ``cards.csv`` for the Locust users.
    PVVs and CVV2s come from the demo issuer's clear test keys (no HSM call per card)."""
    import switch_native

    from switch.core import demo

    pvk = bytes.fromhex(demo.PVK_CLEAR)
    imp = out / "import"
    with ExitStack() as files:
        accounts = _private_writer(files, imp / "accounts.csv")
        accounts.writerow(["account", "currency", "balance", "holder", "phone"])
        cards = _private_writer(files, imp / "cards.csv")
        cards.writerow(["pan", "expiry", "service_code", "product", "account", "pvki", "pvv",
                        "status", "holder"])  # fmt: skip
        users = _private_writer(files, out / "cards.csv")
        users.writerow(["pan", "pin", "expiry", "cvv2"])
        for i in range(1, n + 1):
            pan, pin = load_pan(i), f"{rng.randrange(10_000):04d}"
            account, holder = f"9{i:09d}", f"Load holder {i}"
            accounts.writerow([account, "012", LOAD_BALANCE, holder, f"+21356{i:07d}"])
            pvv = switch_native.pvv_generate(pvk, pan, demo.PVKI, pin)
            cards.writerow([pan, LOAD_EXPIRY, "201", LOAD_PRODUCT, account, demo.PVKI, pvv,
                            "active", holder])  # fmt: skip
            users.writerow([pan, pin, LOAD_EXPIRY, demo.cvv2(pan, LOAD_EXPIRY)])
    return imp / "accounts.csv", imp / "cards.csv", out / "cards.csv"


async def write_keys(state_dir: Path, out: Path) -> Path:
    """``import/keys.toml``: the demo issuer's keys under this state directory's LMK."""
    from switch.core import demo
    from switch.hsm.inprocess import InProcessHsm
    from switch.hsm.lmk import Lmk

    hsm = InProcessHsm(Lmk.load(state_dir / "lmk.json"), authorised=True)
    pvk, cvk, mk_ac = await demo.issuer_keys(hsm)
    await hsm.close()
    path = out / "import" / "keys.toml"
    _write_text(path, f'pvk = "{pvk}"\ncvk = "{cvk}"\nmk_ac = "{mk_ac}"\n')
    return path


def run_import(what: str, path: Path, state_dir: Path, extra: list[str]) -> int:
    """``switch import WHAT PATH``, in this process, through its own argument parser."""
    from switch.cardbase import cli as import_cli

    parser = argparse.ArgumentParser(prog="switch import")
    import_cli.add_arguments(parser)
    args = parser.parse_args([what, str(path), "--state-dir", str(state_dir), *extra])
    rc: int = import_cli.main(args)
    return rc


# ---- the command -------------------------------------------------------------------------------


def _count(text: str) -> int:
    from switch.digits import ascii_int

    value = ascii_int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", type=Path, default=Path("./var-load"),
                        help="state directory to load (new, or holding only the demo set; "
                             "default ./var-load, kept apart from ./var)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("./loaddata"),
                        help="where the Locust files go (default ./loaddata)")  # fmt: skip
    parser.add_argument("--cards", type=_count, default=10_000, help="cards and accounts")
    parser.add_argument("--terminals", type=_count, default=50, help="ATMs, each with a TPK")
    parser.add_argument("--merchants", type=_count, default=10, help="e-commerce merchants")
    parser.add_argument("--bills", type=_count, default=20_000, help="open bills to pay")
    parser.add_argument("--seed", type=_count, default=None,
                        help="random seed (PINs, keys, amounts): the same set again")  # fmt: skip
    parser.add_argument("--store", type=store_arg, default=None, metavar="URL|PATH",
                        help="the store to load, as switch run --store (default: SWITCH_STORE, "
                             "else STATE_DIR/switch.db)")  # fmt: skip


def main(args: argparse.Namespace) -> int:
    from switch.core.service import CoreError

    sizes = Sizes(args.cards, args.terminals, args.merchants, args.bills)
    if sizes.cards < 1 or sizes.terminals < 1 or sizes.merchants < 1:
        return _fail("--cards, --terminals and --merchants: at least 1 each")
    rng = random.Random(args.seed if args.seed is not None else secrets.randbits(64))
    state_dir: Path = args.state_dir
    out: Path = args.out
    if args.store is not None:  # the seeding and the import below open the store it names
        os.environ[ENV_STORE] = args.store
    store_flag = f" --store {redacted(args.store)}" if args.store else ""
    try:
        (out / "import").mkdir(mode=0o700, parents=True, exist_ok=True)
        out.chmod(0o700)
        products = write_products(out)
        asyncio.run(seed_network(state_dir, products, out, sizes, rng))
        keys = asyncio.run(write_keys(state_dir, out))
        accounts, cards, _ = write_cards(out, sizes.cards, rng)
    except CoreError as exc:
        return _fail(f"{exc}; stop the switch first")
    except (LoadDataError, OSError) as exc:
        return _fail(str(exc))
    rc = run_import("accounts", accounts, state_dir, [])
    if rc == 0:
        rc = run_import("cards", cards, state_dir, ["--keys", str(keys), "--config", str(products)])
    if rc != 0:
        return _fail(f"the card import did not load every record (exit {rc})")
    print(
        f"load data set: {sizes.cards} cards, {sizes.terminals} ATMs, {sizes.merchants} "
        f"merchants, {sizes.bills} bills in {state_dir}; Locust files in {out}\n"
        f"run:  switch run --state-dir {state_dir}{store_flag} --config {products}\n"
        f"ISO:  locust -f loadtests/locustfile_iso.py --host tcp://127.0.0.1:8583 "
        f"--cards-file {out / 'cards.csv'} --terminals {out / 'terminals.csv'}\n"
        f"gRPC: locust -f loadtests/locustfile_grpc.py --host grpc://127.0.0.1:50051 "
        f"--cards-file {out / 'cards.csv'} --merchants {out / 'merchants.csv'} "
        f"--bills-file {out / 'bills.csv'}",
        flush=True,
    )
    return 0


def _fail(message: str) -> int:
    print(f"switch loaddata: {message}", file=sys.stderr, flush=True)
    return USAGE_ERROR
