"""The issuer keys file of ``switch import cards --keys FILE``.

A card row carries its keys as cryptograms under the LMK (PVK for the PIN check, CVK for
CVV/CVV2/iCVV, MK-AC for EMV cryptograms). A card management system exports PVVs, not keys:
the keys come from the key ceremony, once per issuer, so they are given once per import in
a small TOML file::

    pvk = "U0123..."    # PIN verification key under the LMK
    cvk = "U4567..."    # card verification key under the LMK
    mk_ac = "U89AB..."  # EMV issuer master key (application cryptograms) under the LMK

Before any card is written the HSM computes each key's check value (BU): a key that is not
a key of that type under this LMK stops the import, instead of a whole card base whose
every PIN would be declined.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from switch.cardbase.importer import IssuerKeys
from switch.hsm.client import HsmClient, HsmError, KeyType

_KEY = re.compile(r"[UTS]?[0-9A-Fa-f]{16,}|S[0-9A-Za-z]+")
_TYPES = {"pvk": KeyType.PVK, "cvk": KeyType.CVK, "mk_ac": KeyType.MK_AC}


class KeysError(ValueError):
    """The keys file is unreadable or a key is wrong; the message names the key."""


def load_keys(path: Path) -> IssuerKeys:
    try:
        doc = tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise KeysError(f"--keys: cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise KeysError(f"--keys: {path} is not TOML: {exc}") from None
    unknown = sorted(set(doc) - set(_TYPES))
    if unknown:
        raise KeysError(f"keys.{unknown[0]}: unknown key (pvk, cvk, mk_ac)")
    values: dict[str, str] = {}
    for name in _TYPES:
        v = doc.get(name)
        if not isinstance(v, str) or not _KEY.fullmatch(v):
            raise KeysError(f"keys.{name}: required, a key cryptogram under the LMK (U + hex)")
        values[name] = v
    return IssuerKeys(values["pvk"], values["cvk"], values["mk_ac"])


async def check_values(hsm: HsmClient, keys: IssuerKeys) -> dict[str, str]:
    """Each key's KCV (safe to print), or ``KeysError`` naming the key the HSM refused."""
    out: dict[str, str] = {}
    for name, kt in _TYPES.items():
        try:
            out[name] = await hsm.key_check_value(kt, getattr(keys, name))
        except HsmError as exc:
            raise KeysError(f"keys.{name}: refused by the HSM ({exc})") from None
    return out
