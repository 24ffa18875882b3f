"""``/metrics``: the switch's state as Prometheus families, read at scrape time.

Everything comes from counters the parts already keep (the core's answers by txn type and
response code, the SQLite store's group-commit statistics, the listeners' open connections,
the remote issuer links' counters and their store-and-forward queue); the only queries are
two COUNTs on read connections, made here and not on the authorization path. The SMS one
runs on the store's read connection on the loop thread, as every core read does; it walks
only the pending rows of the ``alerts_due (status, ...)`` index (a handful while a worker
delivers; a backlog of pending alerts makes it proportionally longer).

Security: label values come only from fixed sets -- the ``TxnType`` and ``ResponseCode``
enums, listener addresses and issuer names from the configuration -- never from a request,
so no PAN, key, PIN block or other cardholder data can reach a scrape.
"""

from __future__ import annotations

import logging
import sqlite3

from switch.core.model import ResponseCode, TxnType
from switch.observe.exposition import Exposition, Kind, Sample
from switch.observe.state import Observed
from switch.store.api import StoreError

log = logging.getLogger("switch.observe.metrics")

UNKNOWN_TXN_TYPE = "unknown"  # the label of a request whose txn type is not a TxnType


def _by_labels(item: tuple[tuple[TxnType | None, ResponseCode], int]) -> tuple[str, str]:
    (kind, code), _ = item
    return (str(kind), str(code))


def _authorizations(observed: Observed) -> list[Sample]:
    samples: list[Sample] = []
    # sorted() copies the live view at once, with no await in between: a consistent snapshot
    counts = sorted(observed.core.authorization_counts().items(), key=_by_labels)
    for (kind, code), n in counts:
        if not isinstance(code, ResponseCode):
            continue  # cannot happen with a typed AuthResult; never emit a foreign label
        txn = kind.value if isinstance(kind, TxnType) else UNKNOWN_TXN_TYPE
        samples.append(({"txn_type": txn, "response_code": code.value}, n))
    return samples


def _sms_pending(observed: Observed) -> int | None:
    try:
        rows = observed.core.store.query("SELECT COUNT(*) FROM alerts WHERE status = 'pending'")
    except (StoreError, sqlite3.Error) as exc:  # a broken store still gets its other metrics
        log.warning("metrics: cannot count pending SMS alerts: %s", exc)
        return None
    return int(rows[0][0])


async def _remote_issuers(observed: Observed, out: Exposition) -> None:
    issuers = observed.remotes.issuers if observed.remotes is not None else {}
    names = sorted(issuers)
    out.family(
        "switch_remote_issuer_up",
        Kind.GAUGE,
        "1 while the ISO 8583 link to the remote issuer is signed on, else 0.",
        [({"issuer": n}, int(issuers[n].client.connected)) for n in names],
    )
    out.family(
        "switch_remote_issuer_timeouts_total",
        Kind.COUNTER,
        "Requests answered 91 because the remote issuer did not answer in time.",
        [({"issuer": n}, issuers[n].timeouts) for n in names],
    )
    out.family(
        "switch_remote_reversals_delivered_total",
        Kind.COUNTER,
        "Queued reversals (0420) the remote issuer acknowledged.",
        [({"issuer": n}, issuers[n].reversals_delivered) for n in names],
    )
    pending: list[Sample] = []
    for n in names:
        try:
            pending.append(({"issuer": n}, await issuers[n].saf.count(n)))
        except sqlite3.Error as exc:
            log.warning("metrics: cannot count the store-and-forward queue of %s: %s", n, exc)
    out.family(
        "switch_saf_pending",
        Kind.GAUGE,
        "Store-and-forward messages queued for the remote issuer, not yet acknowledged.",
        pending,
    )


async def render_metrics(observed: Observed) -> str:
    """The exposition text of one scrape."""
    core = observed.core
    store = core.store
    out = Exposition()
    out.single("switch_up", Kind.GAUGE, "1 while the switch process answers scrapes.", 1)
    out.single(
        "switch_halted",
        Kind.GAUGE,
        "1 once a failed store commit stopped approvals (the core answers 96), else 0.",
        int(core.halted is not None),
    )
    out.family(
        "switch_authorizations_total",
        Kind.COUNTER,
        "Authorization answers given by the core, by transaction type and response code.",
        _authorizations(observed),
    )
    out.single(
        "switch_store_commits_total",
        Kind.COUNTER,
        "Group commits (one fsync each) the store completed.",
        store.batches,
    )
    out.single(
        "switch_store_units_total",
        Kind.COUNTER,
        "Units of work (postings, alerts, state) the store's group commits carried.",
        store.units,
    )
    out.family(
        "switch_iso_connections",
        Kind.GAUGE,
        "Open acquirer connections on each ISO 8583 listener.",
        [
            ({"listener": f"{lst.config.host}:{lst.port}"}, len(lst.connections))
            for lst in observed.listeners
            if lst.server is not None
        ],
    )
    await _remote_issuers(observed, out)
    pending = _sms_pending(observed)
    out.family(
        "switch_sms_alerts_pending",
        Kind.GAUGE,
        "SMS alerts in the outbox not yet delivered.",
        [] if pending is None else [({}, pending)],
    )
    return out.text()
