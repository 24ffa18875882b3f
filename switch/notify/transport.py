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
    shows_secrets: bool
    """True when the text goes to the cardholder's handset (an SMS centre) or to a console
    whose development flag asked for it: the worker then opens sealed secrets (one-time
    codes) for ``send``. False for a sink that is only a log or a terminal: it gets the text
    with each secret masked (``switch.notify.sealing``)."""

    def send(self, msisdn: str, text: str, reference: str) -> str:
        """Send ``text`` to ``msisdn``; return the carrier's message id.

        ``reference`` is the outbox row id, so a transport that supports it can make
        delivery idempotent across a crash between send and mark-sent.
        """
        ...

    def close(self) -> None: ...
