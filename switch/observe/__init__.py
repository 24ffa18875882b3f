"""Operations: the HTTP health and metrics endpoint of ``switch run`` (docs/architecture.md §3).

``http`` is a deliberately tiny HTTP/1.1 server (GET/HEAD, one request per connection) so
that a probe or a Prometheus scrape needs no framework in the switch process; ``metrics``
renders the Prometheus text format (``prometheus_client``) from the core's ``telemetry``
registry and from state the parts already keep; ``endpoints`` wires ``/healthz``,
``/readyz`` and ``/metrics`` together. ``trace`` and ``logs`` are the transaction trace (one
INFO line per answer) and the ``--log-format`` of ``switch run``.
"""
