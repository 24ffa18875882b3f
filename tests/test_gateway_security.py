"""The gateway against an attacker: credential guessing on the REST API (lockout on the
core's clock), and the review items of issue 14 (redirect targets, amounts, order numbers,
escaping, double submits). A real core and gateway on a free port, plain HTTP as SATIM's
clients and a browser without JavaScript send it (``tests.gateway_harness``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from switch.core.testing import ManualClock
from switch.gateway.lockout import Locked, LockoutPolicy, LoginGuard
from switch.gateway.service import GatewayConfig
from tests.gateway_harness import MERCHANT, OTHER, T0, GatewayHarness, rest

POLICY = LockoutPolicy(max_failures_merchant=3, max_failures_address=8, window_s=600,
                       lockout_s=900)  # fmt: skip


@pytest.fixture
def h(state: Path) -> Iterator[GatewayHarness]:
    with GatewayHarness(state, ManualClock(T0), GatewayConfig(lockout=POLICY)) as harness:
        yield harness


def _status(h: GatewayHarness, user: str, password: str) -> dict[str, object]:
    params = {"userName": user, "password": password, "orderId": "A" * 20}
    return rest(h.base, "getOrderStatus.do", params)


def test_wrong_passwords_lock_the_id_then_the_address(
    h: GatewayHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "switch.gateway")
    real, ghost = MERCHANT.merchant_id, "NO-SUCH-MERCHANT"
    denied = {"ErrorCode": "5", "ErrorMessage": "userName/password: access denied"}
    for n in range(3):
        assert _status(h, real, f"guess-{n}") == denied
        assert _status(h, ghost, f"guess-{n}") == denied
    # both ids are locked now, with one answer: nothing says which merchant exists; the
    # right password is refused too (a lucky guess during the lock tells nothing)
    locked = _status(h, real, MERCHANT.api_key)
    assert locked["ErrorCode"] == "5" and "locked" in str(locked["ErrorMessage"])
    assert "15 min" in str(locked["ErrorMessage"])
    assert _status(h, ghost, "x") == locked
    assert h.register("LOCK-1")["errorCode"] == "5"
    # another merchant from the same address still works (6 failures < 8 for the address)
    other = {"userName": OTHER.merchant_id, "password": OTHER.api_key, "orderId": "A" * 20}
    assert rest(h.base, "getOrderStatus.do", other)["ErrorCode"] == "6"  # in: unknown order
    h.clock.advance(900)  # the lock is over
    assert h.register("LOCK-2")["errorCode"] == "0"
    # the address: 8 failures in the window, whatever the ids, lock every id from it
    for n in range(8):
        assert _status(h, f"spray-{n}", "x") == denied
    assert rest(h.base, "getOrderStatus.do", other)["ErrorMessage"] == locked["ErrorMessage"]
    h.clock.advance(900)
    assert rest(h.base, "getOrderStatus.do", other)["ErrorCode"] == "6"
    # audited: every failure and each lock, with id and address, never a password
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert f"userName {real!r} locked for 900 s after 3 failures" in text
    assert "address 127.0.0.1 locked for 900 s after 8 failures" in text
    assert "wrong userName/password for userName 'spray-0' from 127.0.0.1" in text
    assert "guess-" not in text and MERCHANT.api_key not in text and OTHER.api_key not in text


def test_login_guard_addresses_trust_and_memory() -> None:
    """The guard's rules beyond one client address (what HTTP from 127.0.0.1 cannot show)."""
    guard = LoginGuard(LockoutPolicy(max_failures_merchant=2, max_failures_address=50,
                                     window_s=60, lockout_s=300, max_entries=4))  # fmt: skip
    guard.succeeded("M1", "10.0.0.1", 0)  # the merchant's own server logged in before
    guard.failed("M1", "10.6.6.6", 1)
    guard.failed("M1", "10.6.6.7", 2)  # distributed guessing: the id is locked
    with pytest.raises(Locked):
        guard.check("M1", "10.6.6.8", 3)
    guard.check("M1", "10.0.0.1", 3)  # the merchant's known address is not held by it
    guard.check("M1", "10.6.6.8", 302)  # lock over
    # failures spread beyond the window do not add up
    guard.failed("M2", "10.6.6.6", 400)
    guard.failed("M2", "10.6.6.6", 461)
    guard.check("M2", "10.6.6.6", 462)
    # a flood of made-up ids stays bounded, and a lock in force outlives plain counters
    guard.failed("M3", "10.6.6.6", 470)
    guard.failed("M3", "10.6.6.6", 471)
    for n in range(20):
        guard.failed(f"junk-{n}", "10.6.6.9", 472)
        assert len(guard._merchants.counts) <= 4
    with pytest.raises(Locked):
        guard.check("M3", "10.7.7.7", 473)
