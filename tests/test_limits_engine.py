"""The compiled limits engine: reserve/release semantics, rollover, growth, validation."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from switch.core.limits import (
    AMOUNT_LIMIT_EXCEEDED,
    COUNT_LIMIT_EXCEEDED,
    MAX_CARD_ID,
    OK,
    LimitsEngine,
)

DAY = 20_000
ATM_LIMIT = 5_000_000  # 50,000 DZD in centimes


def test_result_codes_are_the_contract() -> None:
    assert (OK, AMOUNT_LIMIT_EXCEEDED, COUNT_LIMIT_EXCEEDED) == (0, 1, 2)


def test_amount_limit_allows_exactly_the_limit_then_refuses() -> None:
    e = LimitsEngine(3)
    assert e.check_and_reserve(7, 0, 3_000_000, DAY, ATM_LIMIT, 100) == 0
    assert e.check_and_reserve(7, 0, 2_000_001, DAY, ATM_LIMIT, 100) == 1
    assert e.usage(7, 0, DAY) == (3_000_000, 1)  # a refused check reserves nothing
    assert e.check_and_reserve(7, 0, 2_000_000, DAY, ATM_LIMIT, 100) == 0
    assert e.usage(7, 0, DAY) == (ATM_LIMIT, 2)
    assert e.check_and_reserve(7, 0, 1, DAY, ATM_LIMIT, 100) == 1


def test_count_limit() -> None:
    e = LimitsEngine(2)
    for _ in range(3):
        assert e.check_and_reserve(1, 1, 10, DAY, 1_000, 3) == 0
    assert e.check_and_reserve(1, 1, 10, DAY, 1_000, 3) == 2
    assert e.usage(1, 1, DAY) == (30, 3)


def test_amount_is_checked_before_count() -> None:
    e = LimitsEngine(1)
    assert e.check_and_reserve(1, 0, 10, DAY, 10, 1) == 0
    assert e.check_and_reserve(1, 0, 10, DAY, 10, 1) == 1


def test_categories_and_cards_are_independent() -> None:
    e = LimitsEngine(3)
    assert e.check_and_reserve(1, 0, 100, DAY, 100, 5) == 0
    assert e.check_and_reserve(1, 1, 100, DAY, 100, 5) == 0
    assert e.check_and_reserve(2, 0, 100, DAY, 100, 5) == 0
    assert e.usage(1, 2, DAY) == (0, 0)
    assert e.usage(3, 0, DAY) == (0, 0)


def test_release_gives_back_and_never_goes_negative() -> None:
    e = LimitsEngine(1)
    e.check_and_reserve(1, 0, 400, DAY, 1_000, 5)
    e.check_and_reserve(1, 0, 300, DAY, 1_000, 5)
    e.release(1, 0, 400, DAY)
    assert e.usage(1, 0, DAY) == (300, 1)
    e.release(1, 0, 10_000, DAY, count=7)
    assert e.usage(1, 0, DAY) == (0, 0)
    e.release(99, 0, 5, DAY)  # unknown card: no-op
    e.release(10**6, 0, 5, DAY)  # beyond capacity: no-op, no growth
    assert e.usage(99, 0, DAY) == (0, 0)


def test_release_of_a_previous_day_is_a_no_op() -> None:
    e = LimitsEngine(1)
    assert e.check_and_reserve(1, 0, 500, DAY, 1_000, 5) == 0
    assert e.check_and_reserve(1, 0, 200, DAY + 1, 1_000, 5) == 0  # new day starts from zero
    e.release(1, 0, 500, DAY)  # yesterday's reversal
    assert e.usage(1, 0, DAY + 1) == (200, 1)
    assert e.usage(1, 0, DAY) == (0, 0)


def test_rollover_resets_every_card() -> None:
    e = LimitsEngine(2, initial_capacity=4)
    for card in range(50):
        assert e.check_and_reserve(card, card % 2, 1_000, DAY, 1_000, 1) == 0
        assert e.check_and_reserve(card, card % 2, 1, DAY, 1_000, 1) == 1
    assert e.active_cards == 50
    assert e.current_day == DAY
    for card in range(50):
        assert e.check_and_reserve(card, card % 2, 1_000, DAY + 1, 1_000, 1) == 0
        assert e.usage(card, card % 2, DAY + 1) == (1_000, 1)
    assert e.active_cards == 50
    assert e.current_day == DAY + 1


def test_a_late_check_for_an_earlier_day_counts_against_the_current_day() -> None:
    e = LimitsEngine(1)
    assert e.check_and_reserve(1, 0, 800, DAY + 1, 1_000, 5) == 0
    assert e.check_and_reserve(1, 0, 800, DAY, 1_000, 5) == 1  # never a way around the limit
    assert e.check_and_reserve(1, 0, 200, DAY, 1_000, 5) == 0
    assert e.usage(1, 0, DAY + 1) == (1_000, 2)
    assert e.current_day == DAY + 1


def test_growth_to_large_card_ids_keeps_existing_counters() -> None:
    e = LimitsEngine(2, initial_capacity=1)
    assert e.capacity == 1
    e.check_and_reserve(0, 1, 11, DAY, 100, 5)
    for card in (1, 5, 1_000, 70_000, 16_000_000):
        assert e.check_and_reserve(card, 1, card % 97, DAY, 100, 5) == 0
    assert e.capacity >= 16_000_001
    assert e.usage(0, 1, DAY) == (11, 1)
    for card in (1, 5, 1_000, 70_000, 16_000_000):
        assert e.usage(card, 1, DAY) == (card % 97, 1)
    assert e.active_cards == 6
    # Slots grow by doubling past the initial pool, counters preserved.
    for card in range(100_000, 100_000 + 70_000):
        e.check_and_reserve(card, 0, 1, DAY, 10, 10)
    assert e.active_cards == 70_006
    assert e.usage(16_000_000, 1, DAY) == (16_000_000 % 97, 1)
    assert e.usage(169_999, 0, DAY) == (1, 1)


def test_memory_is_four_bytes_per_card_id_plus_slots_for_active_cards() -> None:
    e = LimitsEngine(7, initial_capacity=1 << 20)
    slots = 1 << 16
    assert e.nbytes == (1 << 20) * 4 + slots * (4 + 12 * 7)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((-1, 0, 1, DAY, 1, 1), "card_id"),
        ((MAX_CARD_ID + 1, 0, 1, DAY, 1, 1), "card_id"),
        ((1, 3, 1, DAY, 1, 1), "category"),
        ((1, -1, 1, DAY, 1, 1), "category"),
        ((1, 0, -5, DAY, 1, 1), "amount"),
        ((1, 0, 2**64, DAY, 1, 1), "amount"),
        ((1, 0, 1, -1, 1, 1), "day"),
        ((1, 0, 1, DAY, -1, 1), "max_amount"),
        ((1, 0, 1, DAY, 1, -1), "max_count"),
        ((1, 0, "10", DAY, 1, 1), "amount"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(args: tuple[object, ...], field: str) -> None:
    e = LimitsEngine(3)
    with pytest.raises(ValueError, match=field):
        e.check_and_reserve(*args)  # type: ignore[arg-type]
    assert e.current_day is None and e.active_cards == 0


def test_release_and_usage_validate_too() -> None:
    e = LimitsEngine(3)
    with pytest.raises(ValueError, match="count"):
        e.release(1, 0, 1, DAY, count=-1)
    with pytest.raises(ValueError, match="amount"):
        e.release(1, 0, -1, DAY)
    with pytest.raises(ValueError, match="category"):
        e.usage(1, 3, DAY)
    with pytest.raises(ValueError, match="n_categories"):
        LimitsEngine(0)
    with pytest.raises(ValueError, match="initial_capacity"):
        LimitsEngine(1, initial_capacity=0)


def test_concurrent_reservations_never_exceed_the_limit() -> None:
    """Threads racing on one card: each check-and-reserve is atomic, the sum stays capped."""
    e = LimitsEngine(1, initial_capacity=1)
    approved = [0] * 8

    def worker(k: int) -> None:
        for i in range(5_000):
            card = (i // 2) % 50 if i % 2 else 100 + 10_000 * k + i  # shared cards, growth
            if e.check_and_reserve(card, 0, 7, DAY, 1_000, 1_000) == 0 and card < 50:
                approved[k] += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    total = sum(e.usage(c, 0, DAY)[0] for c in range(50))
    assert total == 7 * sum(approved)
    assert all(e.usage(c, 0, DAY)[0] <= 1_000 for c in range(50))
    assert sum(approved) == 50 * (1_000 // 7)


def test_usage_of_a_day_other_than_the_current_one_is_zero() -> None:
    e = LimitsEngine(1)
    e.check_and_reserve(1, 0, 5, DAY, 10, 10)
    assert e.usage(1, 0, DAY - 1) == (0, 0)
    assert e.usage(1, 0, DAY + 1) == (0, 0)
    assert np.int64(5) == e.usage(1, 0, DAY)[0]
