"""A bounded cache of the live cards or accounts the core works on (issue 12: 16 M cards).

The pipeline keeps *one* live object per card and per account: it changes that object in
place (balance, holds, PIN tries) and snapshots it into a unit the store commits later. A
plain LRU would break that in two ways, and this cache is built to avoid both:

* Two live copies. An object evicted while a request still holds it (waiting for the HSM)
  would be loaded again by the next request for the same account; both copies would then
  approve against the same money. So every object handed out is also indexed in a
  ``WeakValueDictionary``: as long as anything still references it, a lookup finds that very
  object again (and puts it back in the LRU) instead of reading the store. Only an object
  nobody holds any more can be read afresh.
* A stale reload. An object whose change is in a unit not yet durable must not be read back
  from the store, which still has the old row. ``pin`` holds such an entry until the unit
  settles (``Pipeline.submit`` pins every card and account a unit snapshots); pinned and
  resident entries (the GL and settlement accounts) never leave.

The LRU itself holds at most ``capacity`` entries; what is alive beyond it is pinned,
resident, or held by a request in flight, so memory is bounded by the capacity plus the work
in progress, not by the size of the card base.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Hashable
from typing import Final, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: Default entries per cache (cards, and accounts): ~140 MB for both (measured with
#: tracemalloc: ~1.4 KB a card with its account, index entries included), and enough for the
#: cards of a busy hour; a start-up option changes it (``--card-cache``).
DEFAULT_CAPACITY: Final = 100_000


class LiveCache(Generic[K, V]):
    """LRU of ``capacity`` entries, plus pinned and resident ones, over a live-object index."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"cache capacity: must be at least 1, got {capacity}")
        self.capacity = capacity
        self._lru: OrderedDict[K, V] = OrderedDict()
        self._live: weakref.WeakValueDictionary[K, V] = weakref.WeakValueDictionary()
        self._pins: dict[K, tuple[V, int]] = {}
        self._resident: dict[K, V] = {}
        self.evictions = 0  # statistics (tests, the benchmark)

    # -- lookups ---------------------------------------------------------------------------
    def get(self, key: K) -> V | None:
        """The live object for ``key`` (marked recently used), or None if none is alive."""
        lru = self._lru
        v = lru.get(key)
        if v is not None:
            lru.move_to_end(key)
            return v
        v = self._live.get(key)  # pinned, resident, or still held by a request in flight
        if v is not None:
            self._keep(key, v)
        return v

    def __getitem__(self, key: K) -> V:
        v = self.get(key)
        if v is None:
            raise KeyError(key)
        return v

    def __contains__(self, key: object) -> bool:
        return key in self._lru or key in self._live

    def setdefault(self, key: K, value: V) -> V:
        """``value`` becomes the live object for ``key`` unless one is alive already (a
        concurrent load won, or a request still holds it): then that one is returned."""
        existing = self.get(key)
        if existing is not None:
            return existing
        self._live[key] = value
        self._keep(key, value)
        return value

    def _keep(self, key: K, value: V) -> None:
        lru = self._lru
        lru[key] = value
        if len(lru) > self.capacity:
            lru.popitem(last=False)  # a pinned or held entry stays alive through its pin
            self.evictions += 1

    # -- entries that must stay ------------------------------------------------------------
    def resident(self, key: K, value: V) -> V:
        """Keep ``value`` for good (the accounts the decision section credits by id)."""
        value = self.setdefault(key, value)
        self._resident[key] = value
        return value

    def pin(self, key: K) -> V | None:
        """Hold the live entry for ``key`` until a matching ``unpin`` (pins count). None, and
        nothing pinned, when no object for ``key`` is alive or it is resident: there is
        nothing to protect (a resident entry never leaves; most units credit two of them)."""
        if key in self._resident:
            return None
        held = self._pins.get(key)
        if held is not None:
            self._pins[key] = (held[0], held[1] + 1)
            return held[0]
        v = self._live.get(key)
        if v is not None:
            self._pins[key] = (v, 1)
        return v

    def unpin(self, key: K) -> None:
        held = self._pins.get(key)
        if held is None:
            return
        if held[1] > 1:
            self._pins[key] = (held[0], held[1] - 1)
            return
        del self._pins[key]
        if key not in self._lru:  # just committed: recently used
            self._keep(key, held[0])

    # -- sizes -----------------------------------------------------------------------------
    def __len__(self) -> int:
        """Entries the cache keeps alive itself: the LRU, pinned and resident ones."""
        return len(self._lru.keys() | self._pins.keys() | self._resident.keys())

    @property
    def in_lru(self) -> int:
        return len(self._lru)

    @property
    def pinned(self) -> int:
        """Entries kept beyond the LRU's bound: pinned or resident."""
        return len(self._pins.keys() | self._resident.keys())
