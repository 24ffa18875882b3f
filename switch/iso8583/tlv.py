"""EMV BER-TLV (field 55): parse into nested :class:`Tlv` objects and build them back.

Parsing and building run in Rust (``switch_native.tlv_parse``/``tlv_build``); this module
gives them a Python shape. Tags are ints (``0x9F26``), values bytes. A constructed tag (bit 6
of its first byte, e.g. ``0x70``, ``0x71``, ``0x77``) is parsed into ``children``; ``value``
always keeps its raw content. Malformed input raises :class:`TlvError` (a ``ValueError``) with
``.offset`` and ``.reason``: indefinite lengths, truncation, tags over 4 bytes and nesting
deeper than 16 are all refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from switch_native import TlvError, tlv_build, tlv_parse

__all__ = ["Tlv", "TlvError", "build", "find", "from_dict", "parse", "to_dict", "walk"]


@dataclass(frozen=True, slots=True)
class Tlv:
    """One BER-TLV data object; ``children`` is None for a primitive."""

    tag: int
    value: bytes
    children: tuple[Tlv, ...] | None = None

    @classmethod
    def primitive(cls, tag: int, value: bytes) -> Tlv:
        return cls(tag, bytes(value))

    @classmethod
    def constructed(cls, tag: int, children: Iterable[Tlv]) -> Tlv:
        """A constructed object whose value is built from ``children``."""
        kids = tuple(children)
        return cls(tag, tlv_build(kids), kids)

    @property
    def tag_hex(self) -> str:
        """The tag as EMV documents write it, e.g. ``9F26``."""
        width = max(2, (self.tag.bit_length() + 7) // 8 * 2)
        return f"{self.tag:0{width}X}"

    def find(self, tag: int) -> Tlv | None:
        """The first object with ``tag`` among this object's descendants (depth-first)."""
        return find(self.children or (), tag)


def _wrap(items: list[Any]) -> list[Tlv]:
    out: list[Tlv] = []
    for tag, value, children in items:
        out.append(Tlv(tag, value, None if children is None else tuple(_wrap(children))))
    return out


def parse(data: bytes | bytearray | memoryview) -> list[Tlv]:
    """Parse a sequence of data objects (the whole of ``data``)."""
    return _wrap(tlv_parse(bytes(data)))


def build(nodes: Iterable[Tlv]) -> bytes:
    """Build a sequence of data objects; constructed ones from their children."""
    return tlv_build(list(nodes))


def walk(nodes: Iterable[Tlv]) -> Iterator[Tlv]:
    """Every object, depth-first, parents before their children."""
    for node in nodes:
        yield node
        if node.children is not None:
            yield from walk(node.children)


def find(nodes: Iterable[Tlv], tag: int) -> Tlv | None:
    """The first object with ``tag``, depth-first."""
    return next((n for n in walk(nodes) if n.tag == tag), None)


def to_dict(data: bytes | Iterable[Tlv]) -> dict[int, bytes]:
    """Primitive objects by tag, depth-first; the first occurrence of a tag wins."""
    nodes = parse(data) if isinstance(data, bytes | bytearray | memoryview) else data
    out: dict[int, bytes] = {}
    for node in walk(nodes):
        if node.children is None:
            out.setdefault(node.tag, node.value)
    return out


def from_dict(values: Mapping[int, bytes]) -> bytes:
    """Build primitive objects in the mapping's order (e.g. the field 55 of a request)."""
    return build(Tlv(tag, bytes(value)) for tag, value in values.items())
