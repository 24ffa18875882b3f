"""Moves the wall clock of every Python process of a test run by a fixed offset.

``scripts/test-dates.sh`` puts this directory on ``PYTHONPATH`` and the offset (seconds) in
``SWITCH_TEST_CLOCK_OFFSET``; Python imports ``sitecustomize`` at start-up, so pytest and
every process a test starts (``switch run``, the SMS worker, ``switch hsm serve``, Locust)
read the same shifted time: ``time.time``, ``datetime.now``, ``time.localtime``... through
time-machine. The monotonic clock is not moved (nothing measures dates with it), and
neither is C code's clock (SQLite, gRPC's TLS): no part of the switch reads the date there.

Why not libfaketime: Debian's 0.9.10 makes a ``threading.Lock.acquire(timeout=...)`` never
return when it moves the monotonic clock, and ``time.sleep`` fail with EINVAL when it does
not; the switch's SMS transport and worker wait on both.
"""

from __future__ import annotations

import os
import time

_offset = os.environ.get("SWITCH_TEST_CLOCK_OFFSET")
if _offset:
    import time_machine

    time_machine.travel(time.time() + float(_offset), tick=True).start()
