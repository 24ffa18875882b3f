"""The default SMS transport: one line per SMS in a file under the state dir, and/or stdout.

Used in development and by ``switch run`` on the embedded default, where no SMS centre is
configured: the operator (or a test) reads what the cardholder would have received. The
text is already masked by ``switch.notify.messages``; line breaks inside it are written as
``\\n`` so that one SMS is exactly one line::

    2026-11-29T13:05:00Z<TAB>alert-42<TAB>+213550000001<TAB>Retrait 5 000,00 DZD ...\\n...
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from switch.notify.errors import LinkDown


class ConsoleTransport:
    """Appends each SMS to ``path`` (created with its directory) and/or prints it."""

    def __init__(self, path: Path | None = None, *, stdout: TextIO | None = None) -> None:
        if path is None and stdout is None:
            stdout = sys.stdout
        self.path = path
        self._stdout = stdout
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

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
                    with self.path.open("a", encoding="utf-8") as f:
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
