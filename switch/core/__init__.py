"""The channel-neutral authorization core (docs/architecture.md §1).

Entry point for the wire layers: ``switch.core.service.SwitchCore`` (its docstring lists the
stable API). Inside:

* ``model`` -- the ``AuthRequest`` / ``AuthResult`` contract;
* ``pipeline`` -- validate, route, card/account checks, security via the HSM, limits, ledger;
* ``followups`` -- reversal, void, completion, refund of an earlier transaction;
* ``context`` -- per-request state, idempotency key and request fingerprint;
* ``domain`` -- cards, CCP accounts, terminals, merchants, billers, BIN routes;
* ``categories`` + ``switch.config`` (``products.toml``) -- limit envelopes, dated limits and fees;
* ``limits`` (Cython) + ``business_day`` -- the daily counters;
* ``remote`` -- BIN routing and the ``RemoteIssuer`` hook; ``emv`` -- field 55 TLV;
* ``demo`` / ``demo_cli`` / ``testing`` -- the documented demo data set and request builders.

Storage is behind ``switch.store.api.Store`` (SQLite backend: ``switch.store.sqlite``).
"""
