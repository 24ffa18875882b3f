"""Where an SMS alert goes once the outbox worker picks it up.

A transport sends one text to one MSISDN and raises ``TransportError`` when the message
was not accepted; the worker then retries with back-off. Implementations: console/file
(the default) and SMPP (smpplib) for a real SMS centre.
"""

from __future__ import annotations

from typing import Protocol


class TransportError(Exception):
    """The SMS was not accepted; the alert stays pending and is retried."""


class SmsTransport(Protocol):
    def send(self, msisdn: str, text: str, reference: str) -> str:
        """Send ``text`` to ``msisdn``; return the carrier's message id.

        ``reference`` is the outbox row id, so a transport that supports it can make
        delivery idempotent across a crash between send and mark-sent.
        """
        ...

    def close(self) -> None: ...
