"""Routing by BIN, and the hook through which remote issuers are reached.

The core decides *where* a card is authorised (longest matching BIN prefix: on-us, or a
named remote issuer). It does not speak to remote hosts itself: the ISO 8583 issuer client
(another part) registers a ``RemoteIssuer`` under the route's name with
``SwitchCore.register_remote_issuer``. Without a registered client the core answers 91
("route to remote issuer X: not connected"), which the acquirer side reports as issuer
unavailable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from switch.core.domain import ONUS, BinRoute
from switch.core.model import AuthRequest, AuthResult


class RemoteIssuer(Protocol):
    async def authorize(self, req: AuthRequest) -> AuthResult:
        """Forward ``req`` to the remote host; 91 on time-out (and queue the 0420 itself)."""
        ...


@runtime_checkable
class HoldsOriginals(Protocol):
    """A remote issuer client that serialises the follow-ups of one remote original across
    the nodes sharing the store (``switch.iso8583.remote.RemoteIssuerClient``): what a
    follow-up takes from its original (captured, refunded, reversed) is known only to the
    node that journals it, so on a shared store a node decides one only while it holds the
    original, and reads the original's journal again once it does (``switch.core.followups``).
    """

    async def hold_original(self, txn_id: str, owner: object) -> Callable[[], None]:
        """Wait until ``owner`` alone decides follow-ups of ``txn_id``; the release (call once
        the follow-up's unit settled). ``TimeoutError``: held elsewhere for too long."""
        ...


@dataclass(frozen=True, slots=True)
class Route:
    destination: str  # "onus" or the remote issuer's name
    prefix: str

    @property
    def on_us(self) -> bool:
        return self.destination == ONUS


class BinTable:
    """Longest-prefix match over the BIN routes (a dict probe per prefix length)."""

    def __init__(self, routes: list[BinRoute]) -> None:
        self._by_prefix = {r.prefix: r.destination for r in routes}
        self._lengths = sorted({len(r.prefix) for r in routes}, reverse=True)

    def route(self, pan: str) -> Route | None:
        for n in self._lengths:
            dest = self._by_prefix.get(pan[:n])
            if dest is not None:
                return Route(dest, pan[:n])
        return None

    def routes(self) -> list[BinRoute]:
        return [BinRoute(p, d) for p, d in sorted(self._by_prefix.items())]
