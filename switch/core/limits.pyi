"""Type stub of the compiled limits engine (``limits.pyx``), for mypy strict.

Memory: 4 bytes per card id (dense index up to the highest id) plus, for each card that used
a limit on the current day, 4 + 12 x n_categories bytes (88 with 7 categories).
"""

import numpy.typing as npt

OK: int
AMOUNT_LIMIT_EXCEEDED: int
COUNT_LIMIT_EXCEEDED: int
MAX_CARD_ID: int
MAX_DAY: int

class LimitsEngine:
    @property
    def n_categories(self) -> int: ...
    def __init__(self, n_categories: int, initial_capacity: int = 1024) -> None: ...
    def check_and_reserve(
        self, card_id: int, category: int, amount: int, day: int, max_amount: int, max_count: int
    ) -> int: ...
    def release(
        self, card_id: int, category: int, amount: int, day: int, count: int = 1
    ) -> None: ...
    def usage(self, card_id: int, category: int, day: int) -> tuple[int, int]: ...
    def rebuild(
        self,
        card_ids: npt.ArrayLike,
        categories: npt.ArrayLike,
        amounts: npt.ArrayLike,
        days: npt.ArrayLike,
        counts: npt.ArrayLike | None = None,
        today: int | None = None,
    ) -> None: ...
    @property
    def current_day(self) -> int | None: ...
    @property
    def capacity(self) -> int: ...
    @property
    def active_cards(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
