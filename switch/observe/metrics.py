"""``/metrics``: the switch's state and its telemetry in the Prometheus text format 0.0.4.

Two sources, rendered by ``prometheus_client``'s ``generate_latest`` in one pass:

* the core's ``Telemetry`` registry (``switch.observe.telemetry``): the authorization counter
  and latency histograms, HSM calls, store commits with their batch sizes, and the process
  (CPU, RSS, file descriptors), GC and Python families -- updated as the switch works;
* families read from the parts at scrape time (``_state_families``): ``switch_up``,
  ``switch_halted``, the store's commit counters, the listeners' open connections, the remote
  issuer links and their store-and-forward queues, the pending SMS alerts. The only queries
  are two COUNTs on read connections, made here and not on the authorization path. The SMS
  one runs on the store's read connection on the loop thread, as every core read does; it
  walks only the pending rows of the ``alerts_due (status, ...)`` index.

Security: label values come only from fixed sets -- our enums, HSM method names, listener
addresses and issuer names from the configuration -- never from a request, so no PAN, key,
PIN block or other cardholder data can reach a scrape.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from switch.observe.state import Observed
from switch.store.api import StoreError

log = logging.getLogger("switch.observe.metrics")


class _Scrape(Collector):
    """What one scrape exposes: the families read now, then the telemetry registry's."""

    def __init__(self, families: list[Metric], registry: Collector) -> None:
        self._families = families
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        yield from self._families
        yield from self._registry.collect()


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=value)


def _by_label(
    family: CounterMetricFamily | GaugeMetricFamily, samples: Iterable[tuple[str, float]]
) -> CounterMetricFamily | GaugeMetricFamily:
    for label, value in samples:
        family.add_metric([label], value)
    return family


def _sms_pending(observed: Observed) -> int | None:
    try:
        rows = observed.core.store.query("SELECT COUNT(*) FROM alerts WHERE status = 'pending'")
    except (StoreError, sqlite3.Error) as exc:  # a broken store still gets its other metrics
        log.warning("metrics: cannot count pending SMS alerts: %s", exc)
        return None
    return int(rows[0][0])


async def _remote_issuers(observed: Observed) -> list[Metric]:
    issuers = observed.remotes.issuers if observed.remotes is not None else {}
    names = sorted(issuers)
    pending: list[tuple[str, float]] = []
    for n in names:
        try:
            pending.append((n, await issuers[n].saf.count(n)))
        except sqlite3.Error as exc:
            log.warning("metrics: cannot count the store-and-forward queue of %s: %s", n, exc)
    families: list[Metric] = [
        _by_label(
            GaugeMetricFamily(
                "switch_remote_issuer_up",
                "1 while the ISO 8583 link to the remote issuer is signed on, else 0.",
                labels=["issuer"],
            ),
            [(n, int(issuers[n].client.connected)) for n in names],
        ),
        _by_label(
            CounterMetricFamily(
                "switch_remote_issuer_timeouts",
                "Requests answered 91 because the remote issuer did not answer in time.",
                labels=["issuer"],
            ),
            [(n, issuers[n].timeouts) for n in names],
        ),
        _by_label(
            CounterMetricFamily(
                "switch_remote_reversals_delivered",
                "Queued reversals (0420) the remote issuer acknowledged.",
                labels=["issuer"],
            ),
            [(n, issuers[n].reversals_delivered) for n in names],
        ),
        _by_label(
            GaugeMetricFamily(
                "switch_saf_pending",
                "Store-and-forward messages queued for the remote issuer, not yet acknowledged.",
                labels=["issuer"],
            ),
            pending,
        ),
    ]
    return families


async def _state_families(observed: Observed) -> list[Metric]:
    core = observed.core
    store = core.store
    families: list[Metric] = [
        _gauge("switch_up", "1 while the switch process answers scrapes.", 1),
        _gauge(
            "switch_halted",
            "1 once a failed store commit stopped approvals (the core answers 96), else 0.",
            int(core.halted is not None),
        ),
        CounterMetricFamily(
            "switch_store_commits",
            "Group commits (one fsync each) the store completed.",
            value=store.batches,
        ),
        CounterMetricFamily(
            "switch_store_units",
            "Units of work (postings, alerts, state) the store's group commits carried.",
            value=store.units,
        ),
        _by_label(
            GaugeMetricFamily(
                "switch_iso_connections",
                "Open acquirer connections on each ISO 8583 listener.",
                labels=["listener"],
            ),
            [
                (f"{lst.config.host}:{lst.port}", len(lst.connections))
                for lst in observed.listeners
                if lst.server is not None
            ],
        ),
    ]
    families.extend(await _remote_issuers(observed))
    sms = GaugeMetricFamily(
        "switch_sms_alerts_pending", "SMS alerts in the outbox not yet delivered."
    )
    pending = _sms_pending(observed)
    if pending is not None:
        sms.add_metric([], pending)
    families.append(sms)
    return families


async def render_metrics(observed: Observed) -> str:
    """The exposition text of one scrape."""
    families = await _state_families(observed)
    return generate_latest(_Scrape(families, observed.core.telemetry.registry)).decode()
