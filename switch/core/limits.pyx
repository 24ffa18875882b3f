# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Daily amount and count limits per card and category, compiled over NumPy counters.

Why compiled: every debit authorization checks (and reserves) one or two daily envelopes
before it touches the ledger, so this is on the hot path of every ATM withdrawal and payment.
A check is a handful of array reads and writes in C with no Python object touched after the
arguments are converted.

Layout and memory (the issuer plans for ~16 million cards):

* ``_index``: one ``int32`` per card id (card ids are dense integer DB ids), the card's slot
  or -1. Grows by doubling up to the highest card id seen: **4 bytes per card id**
  (64 MB for 16 million cards).
* slots, only for cards that used a limit *on the current day*: ``_slot_card`` (int32) plus
  per category an ``int64`` amount and an ``int32`` count: **4 + 12 x n_categories bytes
  per active card** (88 bytes with the 7 categories of ``switch.core.categories``; 3 million
  cards active in a day cost 264 MB, the 16 million worst case 1.4 GB). Slots grow by
  doubling, never beyond the number of card ids, and are all recycled when the day rolls
  over.

Day rollover: the engine holds one current day (days since the epoch in the issuer's time
zone, see ``switch.core.business_day``); every counter belongs to it. A check for a later
day starts a new day: all slots are released in one C loop and every card starts from zero.
A check for an *earlier* day (a request stamped just before midnight that arrives after it)
is counted against the current day: conservative, it can refuse but never lets a card
exceed a limit. A release or usage query for any other day than the current one is a no-op
/ zero, so a late reversal of yesterday's withdrawal never drives today's counter negative.

Concurrency: each method runs start to finish while holding the GIL and calls no Python
code in between (growth allocates with ``np.empty``, which keeps the GIL, and copies in C;
``rebuild`` builds its arrays aside and swaps them in), so a check-and-reserve is atomic with
respect to the other threads of the process.
"""

import numpy as np

cimport numpy as cnp
from libc.stdint cimport INT32_MAX, INT32_MIN, INT64_MAX, int32_t, int64_t
from libc.string cimport memcpy, memset

cnp.import_array()

OK = 0
AMOUNT_LIMIT_EXCEEDED = 1
COUNT_LIMIT_EXCEEDED = 2
MAX_CARD_ID = INT32_MAX - 1
MAX_DAY = INT32_MAX

cdef int32_t NO_DAY = INT32_MIN


cdef inline int64_t _int_arg(object value, str name, int64_t lo, int64_t hi) except? -1:
    """Convert one argument, raising ValueError that names it when out of range."""
    cdef int64_t v
    try:
        v = value
    except (OverflowError, TypeError):
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}") from None
    if v < lo or v > hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return v


cdef class LimitsEngine:
    """Per-card daily counters; see the module docstring for layout, rollover and memory."""

    def __init__(self, int n_categories, initial_capacity=1024):
        cdef int64_t cap = _int_arg(initial_capacity, "initial_capacity", 1, MAX_CARD_ID + 1)
        if n_categories < 1 or n_categories > 1024:
            raise ValueError(f"n_categories must be in [1, 1024], got {n_categories}")
        self.n_categories = n_categories
        self._day = NO_DAY
        self._n_slots = 0
        self._index = np.full(cap, -1, dtype=np.int32)
        slots = min(cap, 1 << 16)
        self._slot_card = np.zeros(slots, dtype=np.int32)
        self._amount = np.zeros(slots * n_categories, dtype=np.int64)
        self._count = np.zeros(slots * n_categories, dtype=np.int32)

    # ---- hot path -------------------------------------------------------------------------

    def check_and_reserve(self, card_id, category, amount, day, max_amount, max_count):
        """0: reserved (amount and one count), 1: amount limit (-> 61), 2: count limit (-> 65)."""
        cdef int64_t card = _int_arg(card_id, "card_id", 0, MAX_CARD_ID)
        cdef int64_t cat = _int_arg(category, "category", 0, self.n_categories - 1)
        cdef int64_t amt = _int_arg(amount, "amount", 0, INT64_MAX)
        cdef int64_t d = _int_arg(day, "day", 0, MAX_DAY)
        cdef int64_t max_amt = _int_arg(max_amount, "max_amount", 0, INT64_MAX)
        cdef int64_t max_cnt = _int_arg(max_count, "max_count", 0, INT32_MAX)
        cdef Py_ssize_t slot, pos
        cdef int64_t used = 0
        cdef int64_t n = 0
        if d > self._day:
            self._roll(<int32_t>d)
        slot = self._lookup(card)
        if slot >= 0:
            pos = slot * self.n_categories + cat
            used = self._amount[pos]
            n = self._count[pos]
        if amt > max_amt - used:
            return 1
        if n >= max_cnt:
            return 2
        if slot < 0:
            slot = self._allocate(card)
        pos = slot * self.n_categories + cat
        self._amount[pos] = used + amt
        self._count[pos] = <int32_t>(n + 1)
        return 0

    def release(self, card_id, category, amount, day, count=1):
        """Give back what a reversed or declined transaction reserved (never below zero)."""
        cdef int64_t card = _int_arg(card_id, "card_id", 0, MAX_CARD_ID)
        cdef int64_t cat = _int_arg(category, "category", 0, self.n_categories - 1)
        cdef int64_t amt = _int_arg(amount, "amount", 0, INT64_MAX)
        cdef int64_t d = _int_arg(day, "day", 0, MAX_DAY)
        cdef int64_t cnt = _int_arg(count, "count", 0, INT32_MAX)
        cdef Py_ssize_t slot, pos
        if d != self._day:
            return None
        slot = self._lookup(card)
        if slot < 0:
            return None
        pos = slot * self.n_categories + cat
        self._amount[pos] = self._amount[pos] - amt if self._amount[pos] > amt else 0
        self._count[pos] = <int32_t>(self._count[pos] - cnt) if self._count[pos] > cnt else 0
        return None

    def usage(self, card_id, category, day):
        """(amount, count) used by the card in the category on ``day`` (zero for other days)."""
        cdef int64_t card = _int_arg(card_id, "card_id", 0, MAX_CARD_ID)
        cdef int64_t cat = _int_arg(category, "category", 0, self.n_categories - 1)
        cdef int64_t d = _int_arg(day, "day", 0, MAX_DAY)
        cdef Py_ssize_t slot, pos
        if d != self._day:
            return (0, 0)
        slot = self._lookup(card)
        if slot < 0:
            return (0, 0)
        pos = slot * self.n_categories + cat
        return (self._amount[pos], self._count[pos])

    # ---- restart --------------------------------------------------------------------------

    def rebuild(self, card_ids, categories, amounts, days, counts=None, today=None):
        """Replace every counter by the sums of the given postings of the current day.

        One row per reserved posting still standing (reversed ones excluded, or passed with
        their remaining amount). The current day is ``today`` when given, else the latest day
        in ``days``; rows of other days are ignored. ``counts`` (default 1 per row) lets a row
        stand for several transactions. Vectorised: two C passes over the rows, no Python
        object per row.
        """
        cdef int32_t[::1] c_cards, c_cats, c_counts, new_index, new_slot_card, new_count
        cdef int64_t[::1] c_amounts, new_amount
        cdef Py_ssize_t i, n, slot, pos, n_slots = 0
        cdef int64_t card
        cdef int ncat = self.n_categories
        cdef bint overflow = False

        cards_a = _int_array(card_ids, "card_ids", np.int64)
        cats_a = _int_array(categories, "categories", np.int32)
        amounts_a = _int_array(amounts, "amounts", np.int64)
        days_a = _int_array(days, "days", np.int32)
        n_rows = cards_a.shape[0]
        for name, arr in (("categories", cats_a), ("amounts", amounts_a), ("days", days_a)):
            if arr.shape[0] != n_rows:
                raise ValueError(f"{name} has {arr.shape[0]} rows, card_ids has {n_rows}")
        if counts is None:
            counts_a = np.ones(n_rows, dtype=np.int32)
        else:
            counts_a = _int_array(counts, "counts", np.int32)
            if counts_a.shape[0] != n_rows:
                raise ValueError(f"counts has {counts_a.shape[0]} rows, card_ids has {n_rows}")
            if n_rows and counts_a.min() < 0:
                raise ValueError("counts must be non-negative")
        if n_rows:
            if cards_a.min() < 0 or cards_a.max() > MAX_CARD_ID:
                raise ValueError(f"card_ids must be in [0, {MAX_CARD_ID}]")
            if cats_a.min() < 0 or cats_a.max() >= ncat:
                raise ValueError(f"categories must be in [0, {ncat - 1}]")
            if amounts_a.min() < 0:
                raise ValueError("amounts must be non-negative")
            if days_a.min() < 0:
                raise ValueError("days must be non-negative")

        if today is not None:
            day = _int_arg(today, "today", 0, MAX_DAY)
        elif n_rows:
            day = int(days_a.max())
        else:
            day = NO_DAY
        keep = days_a == day
        if not keep.all():
            cards_a, cats_a, amounts_a, counts_a = (
                cards_a[keep], cats_a[keep], amounts_a[keep], counts_a[keep]
            )
        n = cards_a.shape[0]
        cap = max(self._index.shape[0], int(cards_a.max()) + 1 if n else 0)
        new_index = np.full(cap, -1, dtype=np.int32)
        c_cards = cards_a.astype(np.int32)
        c_cats = np.ascontiguousarray(cats_a)
        c_amounts = np.ascontiguousarray(amounts_a)
        c_counts = np.ascontiguousarray(counts_a)

        with nogil:  # pass 1: a slot per distinct card
            for i in range(n):
                card = c_cards[i]
                if new_index[card] < 0:
                    new_index[card] = <int32_t>n_slots
                    n_slots += 1
        slots = max(n_slots, min(self._slot_card.shape[0], 1 << 16), 1)
        new_slot_card = np.zeros(slots, dtype=np.int32)
        new_amount = np.zeros(slots * ncat, dtype=np.int64)
        new_count = np.zeros(slots * ncat, dtype=np.int32)
        with nogil:  # pass 2: sums
            for i in range(n):
                card = c_cards[i]
                slot = new_index[card]
                new_slot_card[slot] = <int32_t>card
                pos = slot * ncat + c_cats[i]
                if c_amounts[i] > INT64_MAX - new_amount[pos]:
                    overflow = True
                    break
                if c_counts[i] > INT32_MAX - new_count[pos]:
                    overflow = True
                    break
                new_amount[pos] += c_amounts[i]
                new_count[pos] += c_counts[i]
        if overflow:
            raise ValueError("amounts or counts overflow a daily counter")
        self._index = new_index
        self._slot_card = new_slot_card
        self._amount = new_amount
        self._count = new_count
        self._n_slots = n_slots
        self._day = <int32_t>day

    # ---- introspection --------------------------------------------------------------------

    @property
    def current_day(self):
        """The day every counter belongs to (None before the first check or rebuild)."""
        return None if self._day == NO_DAY else self._day

    @property
    def capacity(self):
        """Card ids addressable without growing."""
        return self._index.shape[0]

    @property
    def active_cards(self):
        """Cards holding a counter on the current day."""
        return self._n_slots

    @property
    def nbytes(self):
        """Memory held by the counters, in bytes."""
        return (
            self._index.shape[0] * 4
            + self._slot_card.shape[0] * 4
            + self._amount.shape[0] * 8
            + self._count.shape[0] * 4
        )

    # ---- internals ------------------------------------------------------------------------

    cdef Py_ssize_t _lookup(self, int64_t card) noexcept nogil:
        if card >= self._index.shape[0]:
            return -1
        return self._index[card]

    cdef Py_ssize_t _allocate(self, int64_t card) except -1:
        cdef Py_ssize_t slot
        if card >= self._index.shape[0]:
            self._grow_index(card + 1)
        if self._n_slots == self._slot_card.shape[0]:
            self._grow_slots()
        slot = self._n_slots
        self._n_slots += 1
        self._index[card] = <int32_t>slot
        self._slot_card[slot] = <int32_t>card
        return slot

    cdef int _grow_index(self, int64_t need) except -1:
        cdef Py_ssize_t old = self._index.shape[0]
        cdef int64_t cap = max(need, min(2 * old, <int64_t>MAX_CARD_ID + 1))
        cdef int32_t[::1] grown = np.empty(cap, dtype=np.int32)
        memcpy(&grown[0], &self._index[0], old * sizeof(int32_t))
        memset(&grown[old], 0xFF, (cap - old) * sizeof(int32_t))  # -1
        self._index = grown
        return 0

    cdef int _grow_slots(self) except -1:
        cdef Py_ssize_t old = self._slot_card.shape[0]
        # Never more slots than card ids: 16 million cards never cost 32 million slots.
        cdef Py_ssize_t cap = max(old + 1, min(2 * old, self._index.shape[0]))
        cdef Py_ssize_t ncat = self.n_categories
        # np.empty, never np.zeros: NumPy releases the GIL around a large calloc, which
        # would let another thread reserve into the arrays being replaced.
        cdef int32_t[::1] cards = np.empty(cap, dtype=np.int32)
        cdef int64_t[::1] amount = np.empty(cap * ncat, dtype=np.int64)
        cdef int32_t[::1] count = np.empty(cap * ncat, dtype=np.int32)
        memcpy(&cards[0], &self._slot_card[0], old * sizeof(int32_t))
        memcpy(&amount[0], &self._amount[0], old * ncat * sizeof(int64_t))
        memcpy(&count[0], &self._count[0], old * ncat * sizeof(int32_t))
        memset(&cards[old], 0, (cap - old) * sizeof(int32_t))
        memset(&amount[old * ncat], 0, (cap - old) * ncat * sizeof(int64_t))
        memset(&count[old * ncat], 0, (cap - old) * ncat * sizeof(int32_t))
        self._slot_card = cards
        self._amount = amount
        self._count = count
        return 0

    cdef void _roll(self, int32_t day) noexcept nogil:
        """Start ``day``: free every slot (C loops; no allocation, the arrays are reused)."""
        cdef Py_ssize_t i
        cdef Py_ssize_t used = self._n_slots
        cdef Py_ssize_t ncat = self.n_categories
        for i in range(used):
            self._index[self._slot_card[i]] = -1
        if used:
            memset(&self._amount[0], 0, used * ncat * sizeof(int64_t))
            memset(&self._count[0], 0, used * ncat * sizeof(int32_t))
        self._n_slots = 0
        self._day = day


def _int_array(values, str name, dtype):
    """A contiguous 1-D array of ``dtype`` from integer input, or ValueError naming it."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got {arr.ndim} dimensions")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be an integer array, got {arr.dtype}")
    if arr.size and arr.dtype != dtype:
        info = np.iinfo(dtype)
        if arr.min() < info.min or arr.max() > info.max:
            raise ValueError(f"{name} values do not fit {np.dtype(dtype).name}")
    return np.ascontiguousarray(arr, dtype=dtype)
