"""The default SMS transport: one line per SMS in a file under the state dir, and/or stdout.

Used in development and by ``switch run`` on the embedded default, where no SMS centre is
configured: the operator (or a test) reads what the cardholder would have received. The card
number is already cut to its last four digits by ``switch.notify.messages``; a one-time code
is shown as ``******`` unless the transport was built with ``shows_secrets=True`` (the
development flag ``SWITCH_SMS_SHOW_CODES=1``, see ``switch.notify.factory``): a terminal and
a log file are not the cardholder's handset. Line breaks inside a text are written as
``\\n`` so that one SMS is exactly one line::

    2026-11-29T13:05:00Z<TAB>alert-42<TAB>+213550000001<TAB>Retrait 5 000,00 DZD ...\\n...

The file is created 0600 (``switch.store.files``): it is part of the state directory.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from switch.notify.errors import LinkDown
from switch.store.files import DIR_MODE, open_private_append


class ConsoleTransport:
    """Appends each SMS to ``path`` (created 0600, its directory 0700) and/or prints it.

    ``shows_secrets``: print one-time codes in clear (development only); by default the
    worker hands this transport the text with each code masked."""

    def __init__(
        self,
        path: Path | None = None,
        *,
        stdout: TextIO | None = None,
        shows_secrets: bool = False,
    ) -> None:
        if path is None and stdout is None:
            stdout = sys.stdout
        self.path = path
        self.shows_secrets = shows_secrets
        self._stdout = stdout
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)

    def send(self, msisdn: str, text: str, reference: str) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body = (
            text.replace("\\", "\\\\")
            .replace("\r", "\\r")
            .replace("\n", "\\n")
            .replace("\t", "\\t")
        )
        line = f"{stamp}\t{reference}\t{msisdn}\t{body}\n"
        with self._lock:
            try:
                if self.path is not None:
                    with os.fdopen(open_private_append(self.path), "a", encoding="utf-8") as f:
                        f.write(line)
                if self._stdout is not None:
                    self._stdout.write(line)
                    self._stdout.flush()
            except OSError as exc:
                raise LinkDown(f"console transport cannot write: {exc}") from exc
        return f"console-{reference}"

    def close(self) -> None:
        return None


def read_console_file(path: Path) -> list[tuple[str, str, str, str]]:
    """(timestamp, reference, msisdn, text) per line, line breaks restored; for tests/CLI."""
    out: list[tuple[str, str, str, str]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        stamp, ref, msisdn, body = line.split("\t", 3)
        out.append((stamp, ref, msisdn, _unescape(body)))
    return out


def _unescape(body: str) -> str:
    out: list[str] = []
    it = iter(body)
    for ch in it:
        if ch == "\\":
            nxt = next(it, "")
            out.append({"n": "\n", "r": "\r", "t": "\t", "\\": "\\"}.get(nxt, "\\" + nxt))
        else:
            out.append(ch)
    return "".join(out)
