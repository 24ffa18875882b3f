"""Audit trail of HSM commands: command code, key check values and result code, nothing else.

Records go to the dedicated logger ``switch.hsm.audit`` or, once ``attach_file`` was called
(``switch hsm serve`` does), to ``hsm-audit.log`` in the state directory (mode 0600) through a
buffered writer that the server flushes after each batch of commands it read from a
connection: one write per batch instead of a logging call per command, so auditing every
command costs the TCP path little. PINs, PIN blocks, keys and PANs are never passed in, so
they cannot be logged (an alarm names an account by a keyed hash only). An unconfigured
logger costs the in-process hot path one cached level test.

On the logger, the routine successes of the commands every authorization makes (PIN
verification and translation, CVV, ARQC, MAC: ``ROUTINE``) are DEBUG records: at INFO,
``switch run`` wrote one of them per HSM call, more lines than its transaction trace, which
already says what each authorization did. Key management (key generation, import, export,
forming, check values), PIN and LMK-encrypted PIN operations, every refusal and every
verification failure stay INFO, and alarms WARNING. The audit file of ``switch hsm serve``
keeps every command, as before.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Final, TextIO

AUDIT_LOGGER_NAME = "switch.hsm.audit"
audit_logger = logging.getLogger(AUDIT_LOGGER_NAME)

#: Commands an authorization makes; their successes are logged at DEBUG (module docstring).
#: DC/EC/DA/EA verify a PIN, CA/CC translate one, CY verifies a CVV, KQ an ARQC, M6/M8 and
#: MA/MC generate or verify a MAC.
ROUTINE: Final = frozenset({"DC", "EC", "DA", "EA", "CA", "CC", "CY", "KQ", "M6", "M8", "MA", "MC"})
OK: Final = "00"


class Audit:
    """Writes one line per command to the audit file, else to the audit logger."""

    __slots__ = ("_flushed_at", "_second", "_stamp", "file", "logger")

    #: an in-process HSM has no batches: its file is flushed at least this often (seconds)
    FLUSH_INTERVAL = 1.0

    def __init__(self, logger: logging.Logger = audit_logger, file: TextIO | None = None) -> None:
        self.logger = logger
        self.file = file
        self._second = -1
        self._stamp = ""
        self._flushed_at = 0.0

    def enabled(self) -> bool:
        return self.file is not None or self.logger.isEnabledFor(logging.INFO)

    def _stamp_of(self, now: float) -> str:
        second = int(now)
        if second != self._second:  # one strftime per second, not per record
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
        return self._stamp

    def record(self, command: str, code: str, *check_values: str, note: str = "") -> None:
        """One command's record; ``note`` (safe to log, e.g. a keyed account hash and a
        failure count) is appended as is."""
        if self.file is not None:
            kcvs = ",".join(check_values) or "-"
            tail = f" {note}" if note else ""
            now = time.time()
            self.file.write(f"{self._stamp_of(now)} cmd={command} rc={code} kcv={kcvs}{tail}\n")
            if now - self._flushed_at > self.FLUSH_INTERVAL:
                self.flush()
            return
        level = logging.DEBUG if code == OK and command in ROUTINE else logging.INFO
        if self.logger.isEnabledFor(level):
            kcvs = ",".join(check_values) or "-"
            tail = f" {note}" if note else ""
            self.logger.log(level, "cmd=%s rc=%s kcv=%s%s", command, code, kcvs, tail)

    def alarm(self, text: str) -> None:
        """A security alarm (``ALARM`` + ``text``), written and flushed at once: an operator
        reading the trail during an attack must not wait for the next batch. ``text`` carries
        check values and keyed hashes only, like every record."""
        if self.file is not None:
            self.file.write(f"{self._stamp_of(time.time())} ALARM {text}\n")
            self.flush()
        else:
            self.logger.warning("ALARM %s", text)

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()
            self._flushed_at = time.time()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def attach_file(state_dir: Path, audit: Audit) -> Path:
    """Send ``audit``'s records to ``state_dir/hsm-audit.log`` (appended, mode 0600)."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = state_dir / "hsm-audit.log"
    path.touch(mode=0o600, exist_ok=True)
    audit.file = path.open("a", encoding="ascii", buffering=64 * 1024)
    return path
