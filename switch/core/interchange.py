"""Interchange acquirers: the other switches that route our BINs to us, and their zone keys.

As an issuer we do not know every foreign ATM or POS terminal that sends us a request: we know
the *acquirer* (field 32) and the zone keys exchanged with it in a key ceremony -- a zone PIN
key (ZPK) the acquirer translates PIN blocks to, and optionally a zone MAC key (ZAK) under
which it signs its messages (fields 64/128). Both are kept encrypted under our LMK.

This module holds the configuration (``[acquirers.<acquirer_id>]`` tables of the TOML file
``switch run --remote-issuers`` / ``--interchange`` reads) and the one rule both the core (PIN)
and the ISO 8583 listener (MAC) apply to pick a key for a request:

* a terminal is *ours* when we know it (field 41) and, if field 32 names a registered
  acquirer, it is recorded under that acquirer: terminal ids are unique only per acquirer,
  so a foreign ``GAB00001`` must not borrow our own ``GAB00001``'s keys;
* our terminal with a key -> its own key (TPK for PINs, TAK for MACs);
* otherwise a registered acquirer with a zone key -> that key (ZPK / ZAK). An acquirer with
  a ZAK must sign every message it sends us;
* otherwise no key: the same declines as before interchange acquirers existed.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from switch.core.domain import Terminal
from switch.hsm.client import HsmClient, HsmError, HsmUnavailableError, KeyType

__all__ = [
    "PIN_BLOCK_FORMATS",
    "AcquirerConfig",
    "MacKey",
    "PinKey",
    "acquirers_from_toml",
    "check_acquirer_keys",
    "is_our_terminal",
    "load_acquirers",
    "mac_key",
    "pin_key",
]

#: payShield PIN block format codes an acquirer may send: 01 = ISO 9564 format 0,
#: 05 = format 1, 47 = format 3, 48 = format 4.
PIN_BLOCK_FORMATS = frozenset({"01", "05", "47", "48"})
_ACQUIRER_ID = re.compile(r"[0-9]{1,11}")  # field 32 is n..11
_KEY = re.compile(r"[0-9A-Za-z]+")  # a cryptogram under the LMK: U/T/S + hex or key block
_KNOWN_KEYS = frozenset({"zpk", "zak", "pin_block_format", "name"})


@dataclass(frozen=True, slots=True)
class AcquirerConfig:
    """One interchange acquirer as its ``[acquirers.<acquirer_id>]`` table describes it."""

    acquirer_id: str  # field 32 of its requests
    zpk: str  # zone PIN key, under our LMK
    zak: str = ""  # zone MAC key, under our LMK; '' = its messages are not signed
    pin_block_format: str = "01"  # payShield code of the PIN blocks it sends under the ZPK
    name: str = ""

    @property
    def label(self) -> str:
        """How logs and the start banner name it (never a key)."""
        return f"{self.acquirer_id} ({self.name})" if self.name else self.acquirer_id

    @classmethod
    def from_mapping(cls, acquirer_id: str, d: Mapping[str, Any]) -> AcquirerConfig:
        """From a config table; ``ValueError`` names the bad key (``acquirers.<id>.<key>``)."""
        where = f"acquirers.{acquirer_id}"
        if not _ACQUIRER_ID.fullmatch(acquirer_id):
            raise ValueError(f"{where}: the acquirer id (field 32) must be 1 to 11 digits")
        if not isinstance(d, Mapping):
            raise ValueError(f"{where}: must be a table")
        unknown = sorted(set(d) - _KNOWN_KEYS)
        if unknown:
            raise ValueError(f"{where}.{unknown[0]}: unknown key")
        if "zpk" not in d:
            raise ValueError(f"{where}.zpk: required")

        def text(key: str, default: str) -> str:
            value = d.get(key, default)
            if not isinstance(value, str):
                raise ValueError(f"{where}.{key}: must be a string")
            return value.strip()

        zpk = text("zpk", "")
        if not _KEY.fullmatch(zpk):
            raise ValueError(f"{where}.zpk: must be a key under the LMK (e.g. U + 32 hex)")
        zak = text("zak", "")
        if zak and not _KEY.fullmatch(zak):
            raise ValueError(f"{where}.zak: must be a key under the LMK (e.g. U + 32 hex)")
        fmt = text("pin_block_format", "01")
        if fmt not in PIN_BLOCK_FORMATS:
            allowed = ", ".join(sorted(PIN_BLOCK_FORMATS))
            raise ValueError(f"{where}.pin_block_format: {fmt!r} is not one of {allowed}")
        return cls(acquirer_id, zpk, zak, fmt, text("name", ""))


def acquirers_from_toml(data: Mapping[str, Any]) -> list[AcquirerConfig]:
    """The ``[acquirers.<id>]`` tables of a parsed TOML document (none -> empty list)."""
    tables = data.get("acquirers", {})
    if not isinstance(tables, Mapping):
        raise ValueError("acquirers: must be a table of [acquirers.<acquirer_id>] tables")
    return [AcquirerConfig.from_mapping(str(aid), d) for aid, d in tables.items()]


def load_acquirers(paths: Iterable[Path]) -> list[AcquirerConfig]:
    """Every acquirer of the given TOML files; an id in two files is a ``ValueError``."""
    found: dict[str, AcquirerConfig] = {}
    for path in paths:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
        for acq in acquirers_from_toml(data):
            if acq.acquirer_id in found:
                raise ValueError(f"acquirers.{acq.acquirer_id}: configured twice")
            found[acq.acquirer_id] = acq
    return list(found.values())


async def check_acquirer_keys(hsm: HsmClient, acquirers: Iterable[AcquirerConfig]) -> list[str]:
    """Ask the HSM for each zone key's check value (BU) before serving, so a key of the wrong
    type or under another LMK stops ``switch run`` with the key named instead of failing
    every cardholder's PIN later. Returns one banner line per acquirer (KCVs are safe to
    print; keys are not)."""
    lines = []
    for acq in acquirers:
        kcvs = []
        for key_name, key_type, key in (
            ("zpk", KeyType.ZPK, acq.zpk),
            ("zak", KeyType.ZAK, acq.zak),
        ):
            if not key:
                continue
            try:
                kcv = await hsm.key_check_value(key_type, key)
            except HsmUnavailableError as exc:
                raise ValueError(
                    f"acquirers.{acq.acquirer_id}.{key_name}: cannot be checked: {exc.message}"
                ) from None
            except HsmError as exc:
                raise ValueError(
                    f"acquirers.{acq.acquirer_id}.{key_name}: the HSM refused it as a "
                    f"{key_type.name} under this LMK (error {exc.code})"
                ) from None
            kcvs.append(f"{key_type.name} KCV {kcv}")
        mac = "MAC required" if acq.zak else "no MAC"
        lines.append(f"interchange acquirer {acq.label}: {', '.join(kcvs)}, {mac}")
    return lines


# -- key selection ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PinKey:
    """The key a PIN block is under: a terminal's TPK (DC/DA) or a zone ZPK (EC/EA)."""

    key: str
    pin_block_format: str
    interchange: bool  # True: a ZPK, verified with the HSM's interchange commands


@dataclass(frozen=True, slots=True)
class MacKey:
    """The key a message's MAC is under; ``key == ''`` when there is none."""

    key_type: KeyType
    key: str
    required: bool  # an unsigned message is refused whatever the listener's require_mac


NO_MAC_KEY = MacKey(KeyType.TAK, "", False)


def is_our_terminal(
    terminal: Terminal | None, acquirer_id: str, acquirer: AcquirerConfig | None
) -> bool:
    """Whether ``terminal`` (our record of field 41) is the terminal that sent the request."""
    if terminal is None:
        return False
    return acquirer is None or terminal.acquirer_id == acquirer_id


def pin_key(
    terminal: Terminal | None,
    acquirer_id: str,
    acquirer: AcquirerConfig | None,
    request_format: str,
) -> PinKey | None:
    """The key to verify a request's PIN block under, or None (no PIN key: decline)."""
    ours = is_our_terminal(terminal, acquirer_id, acquirer)
    if ours and terminal is not None and terminal.tpk:
        return PinKey(terminal.tpk, request_format, interchange=False)
    if acquirer is not None and acquirer.zpk:
        return PinKey(acquirer.zpk, acquirer.pin_block_format, interchange=True)
    return None


def mac_key(terminal: Terminal | None, acquirer_id: str, acquirer: AcquirerConfig | None) -> MacKey:
    """The key a message's MAC (64/128) is checked and its answer signed under."""
    ours = is_our_terminal(terminal, acquirer_id, acquirer)
    if ours and terminal is not None and terminal.tak:
        return MacKey(KeyType.TAK, terminal.tak, required=False)
    if acquirer is not None and acquirer.zak:
        return MacKey(KeyType.ZAK, acquirer.zak, required=True)
    return NO_MAC_KEY
