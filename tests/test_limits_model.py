"""Model-based test: the compiled engine against a plain-Python reference over random runs.

The reference states the contract in the fewest words: one current day, a dict of
(card, category) -> [amount, count], cleared when a later day arrives; an earlier day is
counted against the current one; releases for other days do nothing and never go below zero.
"""

from __future__ import annotations

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from switch.core.limits import LimitsEngine

N_CATEGORIES = 3
CARDS = st.sampled_from([0, 1, 2, 3, 17, 1_000, 65_537, 2_000_000])
CATEGORIES = st.integers(0, N_CATEGORIES - 1)
AMOUNTS = st.integers(0, 600)
DAY0 = 19_000


class ReferenceLimits:
    def __init__(self) -> None:
        self.day: int | None = None
        self.used: dict[tuple[int, int], list[int]] = {}

    def check_and_reserve(
        self, card: int, cat: int, amount: int, day: int, max_amount: int, max_count: int
    ) -> int:
        if self.day is None or day > self.day:
            self.day = day
            self.used.clear()
        amt, cnt = self.used.get((card, cat), [0, 0])
        if amt + amount > max_amount:
            return 1
        if cnt + 1 > max_count:
            return 2
        self.used[(card, cat)] = [amt + amount, cnt + 1]
        return 0

    def release(self, card: int, cat: int, amount: int, day: int, count: int) -> None:
        if day != self.day or (card, cat) not in self.used:
            return
        amt, cnt = self.used[(card, cat)]
        self.used[(card, cat)] = [max(0, amt - amount), max(0, cnt - count)]

    def usage(self, card: int, cat: int, day: int) -> tuple[int, int]:
        if day != self.day:
            return (0, 0)
        amt, cnt = self.used.get((card, cat), [0, 0])
        return (amt, cnt)


class LimitsMachine(RuleBasedStateMachine):
    @initialize(capacity=st.integers(1, 64))
    def start(self, capacity: int) -> None:
        self.engine = LimitsEngine(N_CATEGORIES, initial_capacity=capacity)
        self.model = ReferenceLimits()
        self.today = DAY0
        self.seen: set[tuple[int, int]] = set()

    @rule(
        card=CARDS,
        cat=CATEGORIES,
        amount=AMOUNTS,
        lag=st.sampled_from([0, 0, 0, 0, 1]),
        max_amount=st.integers(0, 1_500),
        max_count=st.integers(0, 6),
    )
    def check(
        self, card: int, cat: int, amount: int, lag: int, max_amount: int, max_count: int
    ) -> None:
        day = self.today - lag
        expected = self.model.check_and_reserve(card, cat, amount, day, max_amount, max_count)
        got = self.engine.check_and_reserve(card, cat, amount, day, max_amount, max_count)
        assert got == expected
        self.seen.add((card, cat))

    @rule(
        card=CARDS,
        cat=CATEGORIES,
        amount=AMOUNTS,
        lag=st.sampled_from([0, 0, 0, 1]),
        count=st.integers(0, 2),
    )
    def release(self, card: int, cat: int, amount: int, lag: int, count: int) -> None:
        day = self.today - lag
        self.model.release(card, cat, amount, day, count)
        self.engine.release(card, cat, amount, day, count)

    @rule()
    def restart(self) -> None:
        """A restart rebuilds from the model's counters: nothing may change."""
        keys = list(self.model.used)
        self.engine = LimitsEngine(N_CATEGORIES, initial_capacity=4)
        self.engine.rebuild(
            np.array([k[0] for k in keys], dtype=np.int64),
            np.array([k[1] for k in keys], dtype=np.int32),
            np.array([self.model.used[k][0] for k in keys], dtype=np.int64),
            np.full(len(keys), self.model.day or 0, dtype=np.int32),
            counts=np.array([self.model.used[k][1] for k in keys], dtype=np.int32),
            today=self.model.day,
        )

    @rule(step=st.integers(1, 3))
    def next_day(self, step: int) -> None:
        self.today += step

    @invariant()
    def same_usage(self) -> None:
        if not hasattr(self, "engine"):
            return
        assert self.engine.current_day == self.model.day
        for card, cat in self.seen:
            for day in (self.today - 1, self.today):
                assert self.engine.usage(card, cat, day) == self.model.usage(card, cat, day)
        assert self.engine.active_cards <= len({card for card, _ in self.seen})


LimitsMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
TestLimitsModel = LimitsMachine.TestCase
