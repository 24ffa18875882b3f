"""Transport failures the worker treats differently from a refusal of one message."""

from __future__ import annotations

from switch.notify.transport import TransportError


class LinkDown(TransportError):
    """The SMS centre (or the file sink) cannot be reached at all: every message would fail
    the same way. The worker stops the batch there and backs off as a whole, instead of
    spending one attempt (and one connect timeout) of every pending alert on a dead link."""
