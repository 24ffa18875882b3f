"""What both locustfiles share: options, load shapes, pacing, answers by response code.

**Options** (Locust's own custom-argument mechanism, so they show in ``locust --help``, in the
web UI and reach the workers of a distributed run): ``--shape``, ``--ramp-time``,
``--step-users``, ``--step-time``, ``--rate``, ``--think-time``, ``--mix``, ``--cards-file``.
Each locustfile adds its own (``--terminals``, ``--merchants``...).

**Shapes** (``--shape``): one ``LoadTestShape`` that reads ``-u``/``-r``/``-t``
(``use_common_options``) and
  * ``ramp``: users grow linearly from 1 to ``-u`` over ``--ramp-time`` s, then hold;
  * ``step``: ``--step-users`` more every ``--step-time`` s up to ``-u``, then hold;
  * ``constant``: ``-u`` users at once; with ``--rate R`` each is paced to R / users requests
    a second (constant throughput whatever the latency, as long as the switch keeps up);
  * none (the default): Locust's usual start, ``-u`` users at ``-r`` a second.

**Answers by response code**: every answer is reported to Locust under ``"<scenario>
<code>"`` (``withdrawal 00``, ``withdrawal 51``), so the statistics show approvals and each
decline apart; a code the scenario does not expect (``51`` for a withdrawal with the load data
set) is reported as a failure, named by its code and reason. No answer (a timeout, a dropped
connection) is a failure under the scenario's bare name.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from locust import LoadTestShape, User, events
from locust.env import Environment

from switch.core import demo
from switch.core.domain import CardStatus
from switch.core.model import ResponseCode
from switch.loaddata import LoadCard, read_cards

_T = TypeVar("_T")
SHAPES = ("none", "ramp", "step", "constant")


class UnexpectedCode(Exception):
    """An answer the scenario did not expect; its text is the code and the reason."""


def reason(code: str) -> str:
    try:
        return ResponseCode(code).name.replace("_", " ").lower()
    except ValueError:
        return "unknown response code"


def parse_mix(text: str, known: Sequence[str]) -> dict[str, int]:
    """``withdrawal=6,balance=3`` -> weights; every name must be a known scenario."""
    mix: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, weight = part.partition("=")
        if name not in known:
            raise ValueError(f"--mix: unknown scenario {name!r} ({', '.join(known)})")
        if not sep or not (weight.isascii() and weight.isdigit()):
            raise ValueError(f"--mix: {name}: a whole weight expected ({name}=3)")
        mix[name] = int(weight)
    if not any(mix.values()):
        raise ValueError("--mix: at least one scenario with a weight above 0")
    return mix


def parse_think_time(text: str) -> tuple[float, float]:
    """``MIN[,MAX]`` seconds; a string option (the web UI edits it as text)."""
    low, _, high = str(text).partition(",")
    try:
        pair = (float(low), float(high or low))
    except ValueError:
        raise ValueError(f"--think-time: seconds, MIN[,MAX], not {text!r}") from None
    if not (0 <= pair[0] <= pair[1] < math.inf):
        raise ValueError("--think-time: 0 <= MIN <= MAX seconds")
    return pair


def check_options(environment: Environment, scenarios: Sequence[str]) -> None:
    """The options Locust's parser cannot check; ``ValueError`` naming the option."""
    opts = environment.parsed_options
    if opts is not None:
        parse_mix(opts.mix, scenarios)
        parse_think_time(opts.think_time)


def check_startup(
    environment: Environment,
    scenarios: Sequence[str],
    data_files: Sequence[tuple[str, Callable[[Path], object]]] = (),
) -> None:
    """At Locust's init: the options, then ``--cards-file`` and each ``(option, reader)`` of
    ``data_files`` read once, so that a bad option or file row stops the run at once with a
    message naming it, not mid-test. A master skips the files (it may not hold them)."""
    opts = environment.parsed_options
    if opts is None:
        return
    try:
        check_options(environment, scenarios)
        if not getattr(opts, "master", False):
            for option, read in (("cards_file", read_cards), *data_files):
                path = getattr(opts, option)
                if path:
                    read(Path(path))
    except ValueError as exc:  # LoadDataError too
        sys.exit(f"locust: {exc}")


def load_cards(opts: Any) -> list[LoadCard]:
    """The cards of ``--cards-file``, or the demo data set's active cards without it."""
    if opts.cards_file:
        return read_cards(Path(opts.cards_file))
    return [
        LoadCard(c.pan, c.pin, c.expiry, demo.cvv2(c.pan, c.expiry))
        for c in demo.CARDS
        if c.status is CardStatus.ACTIVE
    ]


def target_users(opts: Any) -> int:
    """``-u``, or the number typed in the web UI (which Locust stores as ``users``)."""
    return max(1, int(getattr(opts, "users", None) or getattr(opts, "num_users", None) or 1))


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of seconds expected") from None
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 0 or more")
    return value


def add_common_arguments(parser: Any, default_mix: str) -> None:
    """The options both locustfiles take (``parser`` is Locust's configargparse parser)."""
    group = parser.add_argument_group("switch load test")
    group.add_argument(
        "--cards-file",
        default="",
        help="cards.csv of `switch loaddata` (pan, pin, expiry, cvv2); default: the demo cards",
    )
    group.add_argument(
        "--mix", default=default_mix, help=f"scenario weights, default {default_mix}"
    )
    group.add_argument(
        "--think-time",
        default="0.05,0.2",
        help="seconds between a user's scenarios, MIN[,MAX] (0: none)",
    )
    group.add_argument(
        "--rate",
        type=_non_negative,
        default=0.0,
        help="scenarios per second over all users (constant throughput; replaces --think-time)",
    )
    group.add_argument(
        "--shape",
        choices=SHAPES,
        default="none",
        help="load shape: ramp, step or constant (with -u and -t)",
    )
    group.add_argument(
        "--ramp-time", type=_non_negative, default=60.0, help="ramp: seconds from 1 to -u users"
    )
    group.add_argument(
        "--step-users", type=int, default=0, help="step: users added per step (default -u / 5)"
    )
    group.add_argument(
        "--step-time", type=_non_negative, default=30.0, help="step: seconds per step"
    )
    group.add_argument(
        "--timeout", type=_non_negative, default=10.0, help="seconds to wait for an answer"
    )


@events.test_start.add_listener  # type: ignore[misc]
def _share_user_rate(environment: Environment, **_: Any) -> None:
    """On the master (or a standalone run) turn ``--rate`` into a rate per user: the user
    count is known only there, and a custom option set before the users are dispatched
    reaches the workers with the others."""
    opts = environment.parsed_options
    if opts is None or getattr(opts, "worker", False):
        return
    opts.user_rate = opts.rate / target_users(opts) if opts.rate else 0.0


class Pacing:
    """A user's wait between scenarios: constant throughput (``--rate``) or think time."""

    def __init__(self, user: User) -> None:
        opts = user.environment.parsed_options
        self.rate = float(getattr(opts, "user_rate", 0.0) or 0.0) if opts else 0.0
        self.think = parse_think_time(opts.think_time) if opts else (0.05, 0.2)
        self.last = time.monotonic()

    def wait(self) -> float:
        now = time.monotonic()
        if self.rate > 0:
            period = 1.0 / self.rate
            wait = max(0.0, period - (now - self.last))
            self.last = now + wait
            return wait
        return random.uniform(*self.think)


class Mix:
    """Weighted choice among a user's scenarios (``--mix``)."""

    def __init__(self, user: User, scenarios: dict[str, Callable[[], None]], default: str) -> None:
        opts = user.environment.parsed_options
        weights = parse_mix(opts.mix if opts else default, list(scenarios))
        self.names = [n for n, w in weights.items() if w > 0]
        self.weights = [weights[n] for n in self.names]
        self.scenarios = scenarios

    def run_one(self) -> None:
        self.scenarios[random.choices(self.names, self.weights)[0]]()


def partition(environment: Environment, items: Sequence[_T]) -> list[_T]:
    """This process's share of ``items`` in a distributed run (worker i of n takes every n-th
    from the i-th; n is the master's ``--expect-workers``, which Locust passes on), so two
    workers do not use the same terminal or bill; all of them in a run of one process."""
    opts = environment.parsed_options
    if opts is None or not getattr(opts, "worker", False):
        return list(items)
    index = max(0, int(getattr(environment.runner, "worker_index", 0) or 0))
    workers = max(1, int(getattr(opts, "expect_workers", 1) or 1))
    return list(items[index % workers :: workers]) or list(items)


def rotation(items: Sequence[_T]) -> Iterator[_T]:
    """``items`` round-robin from a random start: users of one process spread over them."""
    start = random.randrange(len(items))
    i = start
    while True:
        yield items[i % len(items)]
        i += 1


def report(
    user: User,
    request_type: str,
    scenario: str,
    started: float,
    *,
    code: str | None = None,
    expected: frozenset[str] = frozenset({"00"}),
    length: int = 0,
    error: Exception | None = None,
) -> None:
    """One answer (or failure) to Locust's statistics, named by its response code."""
    if code is not None and error is None and code not in expected:
        error = UnexpectedCode(f"{code} {reason(code)} (expected {'/'.join(sorted(expected))})")
    user.environment.events.request.fire(
        request_type=request_type,
        name=scenario if code is None else f"{scenario} {code}",
        response_time=(time.perf_counter() - started) * 1000,
        response_length=length,
        exception=error,
        context={},
    )


class SelectedShape(LoadTestShape):
    """The ``--shape`` chosen: ramp, step, constant, or Locust's usual -u/-r start."""

    use_common_options = True

    def tick(self) -> tuple[int, float] | None:
        runner = self.runner
        assert runner is not None
        opts = runner.environment.parsed_options
        assert opts is not None
        elapsed = float(self.get_run_time())  # type: ignore[no-untyped-call]
        run_time = getattr(opts, "run_time", None)
        if run_time and elapsed >= run_time:
            return None
        users = target_users(opts)
        rate = float(getattr(opts, "spawn_rate", 0) or 1)
        shape = getattr(opts, "shape", "none")
        if shape == "ramp":
            ramp = opts.ramp_time or 1.0
            target = max(1, math.ceil(users * min(1.0, elapsed / ramp)))
            return target, max(1.0, users / ramp)
        if shape == "step":
            step = opts.step_users or max(1, users // 5)
            target = min(users, step * (1 + int(elapsed // (opts.step_time or 1.0))))
            return target, float(step)
        if shape == "constant":
            return users, float(users)
        return users, rate
