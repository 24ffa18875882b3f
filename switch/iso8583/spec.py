"""ISO 8583 specs as data: load a spec from a TOML or JSON file and compile it once.

A spec file names the MTI and bitmap encodings and, per field number, the field's kind
(``n`` digits, ``z`` track data, ``ans`` text, ``b`` binary, ``x+n`` an amount with its C/D
sign), its encoding (``ascii``,
``ebcdic``, ``bcd``, ``binary``, ``hex``), its length (``fixed`` or an ``L``..``LLLL``
prefix written in ``ascii``, ``ebcdic``, ``bcd`` or ``binary``), its ``max`` length in wire
units (digits for BCD, characters for text and hex, bytes for binary) and, for odd-length
BCD, its ``pad`` (``left``, ``right``, ``right_f``). A ``[defaults]`` table fills what a
field leaves out. ``specs/README.md`` documents the format; ``specs/ascii87.toml`` and
``specs/binary87.toml`` are the shipped specs.

The compiled :class:`Spec` lives in the native module; keep one per connection or process
rather than re-loading: loading parses a file, using a compiled spec costs nothing.
"""

from __future__ import annotations

import functools
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from switch_native import Spec, SpecError

__all__ = [
    "BUILTIN_SPECS",
    "SPECS_DIR",
    "Spec",
    "SpecError",
    "builtin_spec",
    "get_spec",
    "load_spec",
    "spec_from_mapping",
]

SPECS_DIR = Path(__file__).with_name("specs")
BUILTIN_SPECS: tuple[str, ...] = ("ascii87", "binary87")

_FIELD_KEYS = frozenset({"kind", "encoding", "length", "prefix", "max", "pad", "desc"})
_DEFAULTS = {"encoding": "ascii", "length": "fixed", "prefix": "ascii", "pad": "left"}


def spec_from_mapping(data: Mapping[str, Any], *, source: str = "<mapping>") -> Spec:
    """Compile a spec from its data (the parsed content of a spec file)."""
    try:
        name = str(data.get("name") or Path(source).stem)
        mti = str(data.get("mti", "ascii"))
        bitmap = str(data.get("bitmap", "hex"))
        defaults = {**_DEFAULTS, **dict(data.get("defaults", {}))}
        raw_fields = data["fields"]
    except (KeyError, TypeError, AttributeError) as e:
        raise SpecError(f"{source}: needs name, mti, bitmap and a [fields] table ({e})") from None
    if not isinstance(raw_fields, Mapping):
        raise SpecError(f"{source}: [fields] must be a table of field number -> definition")
    fields: list[tuple[int, str, str, str, str, int, str]] = []
    for key, definition in raw_fields.items():
        try:
            number = int(key)
        except ValueError:
            raise SpecError(f"{source}: field key {key!r} is not a number") from None
        if not isinstance(definition, Mapping):
            raise SpecError(f"{source}: field {number}: definition must be a table")
        unknown = set(definition) - _FIELD_KEYS
        if unknown:
            raise SpecError(f"{source}: field {number}: unknown keys {sorted(unknown)}")
        merged = {**defaults, **definition}
        if "kind" not in merged or "max" not in merged:
            raise SpecError(f"{source}: field {number}: needs kind and max")
        max_len = merged["max"]
        if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 1:
            raise SpecError(f"{source}: field {number}: max must be a positive integer")
        fields.append(
            (
                number,
                str(merged["kind"]),
                str(merged["encoding"]),
                str(merged["length"]),
                str(merged["prefix"]),
                max_len,
                str(merged["pad"]),
            )
        )
    try:
        return Spec(name, mti, bitmap, sorted(fields))
    except SpecError as e:
        raise SpecError(f"{source}: {e}") from None


def load_spec(path: str | Path) -> Spec:
    """Load and compile a spec file (``.toml`` or ``.json``)."""
    p = Path(path)
    try:
        if p.suffix == ".json":
            data = json.loads(p.read_text(encoding="utf-8"))
        else:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SpecError(f"{p}: cannot read spec: {e}") from None
    if not isinstance(data, Mapping):
        raise SpecError(f"{p}: a spec file holds a table at the top level")
    return spec_from_mapping(data, source=str(p))


@functools.cache
def builtin_spec(name: str) -> Spec:
    """A shipped spec by name (``ascii87`` or ``binary87``), loaded once per process."""
    if name not in BUILTIN_SPECS:
        raise SpecError(f"no built-in spec {name!r}; built in: {', '.join(BUILTIN_SPECS)}")
    return load_spec(SPECS_DIR / f"{name}.toml")


def get_spec(spec: Spec | str | Path) -> Spec:
    """Accept a compiled spec, a built-in name, or a path to a spec file."""
    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, str) and spec in BUILTIN_SPECS:
        return builtin_spec(spec)
    return load_spec(spec)
