"""Cardholder SMS alerts, delivered from a transactional outbox.

* ``messages``: the French/Arabic texts (``render_alert``, ``render_otp``) and their size;
* ``sms_encoding``: GSM-7 / UCS-2 choice, segment counts, splitting;
* ``outbox`` / ``transport``: the contracts with the store and the SMS carriers;
* ``worker``: claims due alerts, sends, marks; back-off, parking, link-down pauses;
* ``console`` (default) and ``smpp`` transports, built from one setting by ``factory``;
* ``service``: the worker as its own process (``python -m switch.notify.service``) on a
  ``switch.store.sqlite_outbox.SqliteOutbox``; ``supervisor`` keeps it running beside
  ``switch run``; ``delivery`` wires ``switch run --sms-worker process|inline|off``;
* ``worker_lock``: one worker per state directory.

Wiring in a process of one's own (one worker per store)::

    worker = AlertWorker(core.store, transport_from_url(os.environ.get("SWITCH_SMS"), state_dir))
    task = asyncio.create_task(worker.run(stop))   # ... stop.set(); await task; worker.close()
"""
