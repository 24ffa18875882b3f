"""A bounded cache of the live cards or accounts the core works on (issue 12: 16 M cards).

The pipeline keeps *one* live object per card and per account: it changes that object in
place (balance, holds, PIN tries) and snapshots it into a unit the store commits later. A
plain LRU would break that in two ways, and this cache is built to avoid both:

* Two live copies. An object evicted while a request still holds it (waiting for the HSM)
  would be loaded again by the next request for the same account; both copies would then
  approve against the same money. So every object handed out is also indexed weakly (a
  ``KeyedRef`` per key): as long as anything still references it, a lookup finds that very
  object again (and puts it back in the LRU) instead of reading the store. Only an object
  nobody holds any more can be read afresh.
* A stale reload. An object whose change is in a unit not yet durable must not be read back
  from the store, which still has the old row. ``pin`` holds such an entry until the unit
  settles (``Pipeline.submit`` pins every card and account a unit snapshots); pinned and
  resident entries (the GL and settlement accounts) never leave.

The LRU itself holds at most ``capacity`` entries; what is alive beyond it is pinned,
resident, or held by a request in flight, so memory is bounded by the capacity plus the work
in progress, not by the size of the card base.

Cost on the hot path (every authorization pins its account and unpins it once durable): a
pin is one counter in a plain dict, nothing else. The object itself is kept alive by the LRU
and needs a strong reference of the pins only when the LRU evicts it while it is pinned:
eviction moves it to ``_held`` then, and the last ``unpin`` puts it back into the LRU. The
weak index is a dict of ``weakref.KeyedRef`` written here directly: ``WeakValueDictionary``
does the same with a Python-level guard around every call, several times the cost of a
lookup (measured, in-process withdrawals: see the commit that made this change).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Hashable, Iterable
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
        # key -> weak reference to the live object; an entry removes itself when its object
        # dies (the callback checks that the dead reference is still the indexed one)
        self._live: dict[K, weakref.KeyedRef[K, V]] = {}
        self._pins: dict[K, int] = {}  # key -> units not yet durable that snapshot it
        self._held: dict[K, V] = {}  # pinned entries the LRU evicted: kept alive here
        self._resident: dict[K, V] = {}
        self.evictions = 0  # statistics (tests, the benchmark)

        live = self._live

        def _gone(ref: weakref.KeyedRef[K, V]) -> None:
            if live.get(ref.key) is ref:
                del live[ref.key]

        self._gone = _gone

    # -- lookups ---------------------------------------------------------------------------
    def get(self, key: K) -> V | None:
        """The live object for ``key`` (marked recently used), or None if none is alive."""
        lru = self._lru
        v = lru.get(key)
        if v is not None:
            lru.move_to_end(key)
            return v
        ref = self._live.get(key)  # pinned, resident, or still held by a request in flight
        if ref is None:
            return None
        v = ref()
        if v is not None:
            self._keep(key, v)
        return v

    def __getitem__(self, key: K) -> V:
        v = self.get(key)
        if v is None:
            raise KeyError(key)
        return v

    def __contains__(self, key: object) -> bool:
        if key in self._lru:
            return True
        ref = self._live.get(key)  # type: ignore[arg-type]
        return ref is not None and ref() is not None

    def setdefault(self, key: K, value: V) -> V:
        """``value`` becomes the live object for ``key`` unless one is alive already (a
        concurrent load won, or a request still holds it): then that one is returned."""
        existing = self.get(key)
        if existing is not None:
            return existing
        self._live[key] = weakref.KeyedRef(value, self._gone, key)
        self._keep(key, value)
        return value

    def _keep(self, key: K, value: V) -> None:
        lru = self._lru
        lru[key] = value
        if len(lru) > self.capacity:
            old, v = lru.popitem(last=False)
            self.evictions += 1
            if old in self._pins:  # its unit is not durable yet: it must stay alive
                self._held[old] = v

    # -- entries that must stay ------------------------------------------------------------
    def resident(self, key: K, value: V) -> V:
        """Keep ``value`` for good (the accounts the decision section credits by id)."""
        value = self.setdefault(key, value)
        self._resident[key] = value
        return value

    def pin(self, key: K) -> bool:
        """Hold the entry for ``key`` until a matching ``unpin`` (pins count); the caller
        holds its live object. False, and nothing pinned, for a resident entry: it never
        leaves (most units credit one or two of them)."""
        if key in self._resident:
            return False
        pins = self._pins
        pins[key] = pins.get(key, 0) + 1
        return True

    def pin_all(self, keys: Iterable[K]) -> list[K]:
        """``pin`` each key; the keys pinned (to pass to ``unpin_all`` once durable)."""
        resident = self._resident
        pinned = [k for k in keys if k not in resident]
        pins = self._pins
        for k in pinned:
            pins[k] = pins.get(k, 0) + 1
        return pinned

    def is_pinned(self, key: K) -> bool:
        """A unit not yet durable snapshots this entry (its store row is older than it)."""
        return key in self._pins

    def unpin(self, key: K) -> None:
        pins = self._pins
        n = pins.get(key)
        if n is None:
            return
        if n > 1:
            pins[key] = n - 1
            return
        del pins[key]
        v = self._held.pop(key, None)
        if v is not None and key not in self._lru:  # evicted meanwhile, just committed:
            self._keep(key, v)  # recently used

    def unpin_all(self, keys: Iterable[K]) -> None:
        for k in keys:
            self.unpin(k)

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
