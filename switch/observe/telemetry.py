"""Per-core metrics and the transaction trace: what ``SwitchCore`` records as it answers.

One ``Telemetry`` per ``SwitchCore``, with its own Prometheus ``CollectorRegistry`` (two
cores in one process -- tests, benchmarks -- never mix their counts). It holds:

* ``switch_authorizations_total{txn_type, response_code, channel}`` -- answers given;
* ``switch_authorization_duration_seconds{channel, txn_type}`` -- from the request's arrival
  at the wire (ISO frame cut, gRPC handler entered) to the core's answer;
* ``switch_hsm_call_duration_seconds{command}`` -- every HSM call (``TimedHsm``);
* ``switch_store_commit_duration_seconds`` and ``switch_store_commit_batch_units`` -- each
  group commit (rows written + COMMIT, i.e. the fsync) and how many units it carried;
* the process (CPU, RSS, file descriptors), garbage collector and Python version families
  of ``prometheus_client``.

Cost on the hot path: an answer appends its latency (integer nanoseconds) to a plain list
kept per label set, and an HSM call its duration likewise; nothing of ``prometheus_client``
runs per request. The lists are folded into the counter and histograms (one bucket search
per value, one increment per bucket touched) when the registry is collected -- a scrape --
or when one grows past ``FOLD_AT`` values, so memory stays bounded without a scrape. The
exposition is the same as observing each value (``observe`` costs ~1-2 us a call with its
lock and bucket loop; the fold ~0.2 us a value). Plus the trace line when INFO is enabled.
Labels come only from fixed sets (our enums, HSM method names): nothing a request carries
reaches a label.
"""

from __future__ import annotations

import inspect
import logging
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, cast

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from switch.core.model import AuthRequest, AuthResult, Channel, TxnType
from switch.hsm.client import HsmClient
from switch.observe import trace

# ``*_created`` series (a timestamp per label set) double a scrape for nothing we graph.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: Authorization latency buckets (seconds): an on-us answer takes ~0.3-20 ms under load; a
#: remote issuer's up to its time-out.
LATENCY_BUCKETS: Final = (
    0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip
HSM_BUCKETS: Final = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip
COMMIT_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
#: Values a pending list holds before it is folded without waiting for a scrape.
FOLD_AT: Final = 4096


def fold(child: Any, values_ns: list[int]) -> None:
    """Add ``values_ns`` (nanoseconds) to the histogram ``child`` as if each were observed
    in seconds: one bucket search per value, one increment per bucket touched, one for the
    sum. Uses the child's bucket and sum values (``prometheus_client``'s ``Histogram``
    layout since 0.4); a child without them gets ``observe`` per value instead."""
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    bounds = getattr(child, "_upper_bounds", None)
    if buckets is None or total is None or bounds is None or len(bounds) != len(buckets):
        for v in values_ns:
            child.observe(v / 1e9)
        return
    counts = [0] * len(bounds)
    for v in values_ns:
        counts[bisect_left(bounds, v / 1e9)] += 1  # le: a value on a bound counts there
    for i, n in enumerate(counts):
        if n:
            buckets[i].inc(n)
    total.inc(sum(values_ns) / 1e9)


class _Fold(Collector):
    """Registered first in a ``Telemetry`` registry: a collection folds the pending values
    into the metrics before they are read. Exposes nothing itself."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterable[Metric]:
        self._telemetry.fold()
        return ()


class Telemetry:
    """The metrics one core records, and the trace line of each answer."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        # the answers and HSM calls not yet in the metrics, by label values (see ``fold``)
        self._answers: dict[tuple[str, str, str], list[int]] = {}
        self._hsm_calls: dict[str, list[int]] = {}
        reg.register(_Fold(self))
        self.authorizations = Counter(
            "switch_authorizations",
            "Authorization answers given by the core, by transaction type, response code "
            "and channel.",
            ["txn_type", "response_code", "channel"],
            registry=reg,
        )
        self.latency = Histogram(
            "switch_authorization_duration_seconds",
            "Authorization latency from the request's arrival to the core's answer, by "
            "channel and transaction type.",
            ["channel", "txn_type"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.hsm_latency = Histogram(
            "switch_hsm_call_duration_seconds",
            "HSM calls (in-process or over TCP), by command.",
            ["command"],
            buckets=HSM_BUCKETS,
            registry=reg,
        )
        self.commit_latency = Histogram(
            "switch_store_commit_duration_seconds",
            "Store group commits: rows written and COMMIT (the fsync).",
            buckets=COMMIT_BUCKETS,
            registry=reg,
        )
        self.commit_units = Histogram(
            "switch_store_commit_batch_units",
            "Units of work (authorizations, alerts, state) carried by each group commit.",
            buckets=BATCH_BUCKETS,
            registry=reg,
        )
        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
        GCCollector(registry=reg)

    def answered(self, req: AuthRequest, result: AuthResult, started_ns: int) -> None:
        """Count, time and trace one answer of ``SwitchCore.authorize``.

        ``started_ns``: when the core was called, the latency's start unless the wire layer
        left a ``Call`` with the request's arrival time."""
        now = time.perf_counter_ns()
        call = trace.CURRENT_CALL.get()
        channel = req.channel._value_ if isinstance(req.channel, Channel) else trace.UNKNOWN
        kind = req.txn_type._value_ if isinstance(req.txn_type, TxnType) else trace.UNKNOWN
        code = result.response_code._value_
        elapsed_ns = now - (started_ns if call is None else call.received_ns)
        key = (kind, code, channel)
        pending = self._answers.get(key)
        if pending is None:
            pending = self._answers[key] = []
        pending.append(elapsed_ns)
        if len(pending) >= FOLD_AT:
            self.fold()
        if trace.log.isEnabledFor(logging.INFO):
            interface = trace.IN_PROCESS if call is None else call.interface
            operation = "" if call is None else call.operation
            line = trace.fields(
                req, result, interface, operation, elapsed_ns // 1000, channel, kind
            )
            trace.emit(trace.TxnLine(line))
        if call is not None:
            call.answered = True
            if call.on_answer is not None and result.transaction_id:
                call.on_answer(result.transaction_id)

    def fold(self) -> None:
        """Put every pending answer and HSM call into the counter and histograms."""
        for (kind, code, channel), values in self._answers.items():
            if values:
                self.authorizations.labels(kind, code, channel).inc(len(values))
                fold(self.latency.labels(channel, kind), values)
                values.clear()
        for command, values in self._hsm_calls.items():
            if values:
                fold(self.hsm_latency.labels(command), values)
                values.clear()

    def store_committed(self, units: int, seconds: float) -> None:
        """One group commit is durable (``SqliteStore.on_commit``)."""
        self.commit_latency.observe(seconds)
        self.commit_units.observe(units)

    def timed_hsm(self, hsm: HsmClient) -> HsmClient:
        """``hsm`` with every call observed in ``switch_hsm_call_duration_seconds``."""
        if isinstance(hsm, TimedHsm):
            return cast(HsmClient, hsm)
        return cast(HsmClient, TimedHsm(hsm, self.hsm_latency, self))


class TimedHsm:
    """An ``HsmClient`` that times each coroutine method of the one it wraps.

    Generic on purpose: every method of the protocol (and any an implementation adds) is
    timed without a list here to keep in step. A method is wrapped on first use and the
    wrapper cached on the instance, so later calls cost one attribute lookup, as before.
    With a ``telemetry``, a call's duration goes to its pending list (folded at a scrape);
    without, straight into ``histogram``."""

    def __init__(
        self, inner: HsmClient, histogram: Histogram, telemetry: Telemetry | None = None
    ) -> None:
        self._inner = inner
        self._histogram = histogram
        self._telemetry = telemetry

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name.startswith("_") or name == "close" or not inspect.iscoroutinefunction(attr):
            return attr
        method = cast(Callable[..., Awaitable[Any]], attr)
        clock = time.perf_counter_ns
        telemetry = self._telemetry
        if telemetry is None:
            child = self._histogram.labels(name)

            async def observed(*args: Any, **kwargs: Any) -> Any:
                started = clock()
                try:
                    return await method(*args, **kwargs)
                finally:
                    child.observe((clock() - started) / 1e9)

            setattr(self, name, observed)
            return observed
        pending = telemetry._hsm_calls.setdefault(name, [])

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = clock()
            try:
                return await method(*args, **kwargs)
            finally:
                pending.append(clock() - started)
                if len(pending) >= FOLD_AT:
                    telemetry.fold()

        setattr(self, name, timed)
        return timed
