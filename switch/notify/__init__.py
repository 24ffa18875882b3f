"""Cardholder SMS alerts, delivered from a transactional outbox.

* ``messages``: the French/Arabic texts (``render_alert``, ``render_otp``) and their size;
* ``sms_encoding``: GSM-7 / UCS-2 choice, segment counts, splitting;
* ``outbox`` / ``transport``: the contracts with the store and the SMS carriers;
* ``worker``: claims due alerts, sends, marks; back-off, parking, link-down pauses;
* ``console`` (default) and ``smpp`` transports, built from one setting by ``factory``;
* ``service``: the worker as its own process (``python -m switch.notify.service``) on a
  ``switch.store.sqlite_outbox.SqliteOutbox``; ``supervisor`` keeps it running beside
  ``switch run``; ``delivery`` wires ``switch run --sms-worker process|inline|off``;
* ``worker_lock``: one worker per state directory;
* ``sealing``: one-time codes sealed in the outbox, opened only for a transport that delivers
  them (``reseal`` fixes the clear codes an older release stored).

Wiring in a process of one's own (one worker per store)::

    transport = transport_from_url(os.environ.get("SWITCH_SMS"), state_dir)
    worker = AlertWorker(core.store, transport, seal=AlertSeal.for_state_dir(state_dir))
    task = asyncio.create_task(worker.run(stop))   # ... stop.set(); await task; worker.close()
"""
