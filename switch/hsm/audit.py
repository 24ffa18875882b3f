"""Audit trail of HSM commands: command code, key check values and result code, nothing else.

Records go to the dedicated logger ``switch.hsm.audit`` (and, with ``attach_file``, to
``hsm-audit.log`` in the state directory). PINs, PIN blocks, keys and PANs are never passed
in, so they cannot be logged. The check for an enabled logger comes first, so an unconfigured
logger costs the in-process hot path one cached level test.
"""

from __future__ import annotations

import logging
from pathlib import Path

AUDIT_LOGGER_NAME = "switch.hsm.audit"
audit_logger = logging.getLogger(AUDIT_LOGGER_NAME)


class Audit:
    """Writes one line per command to the audit logger."""

    __slots__ = ("logger",)

    def __init__(self, logger: logging.Logger = audit_logger) -> None:
        self.logger = logger

    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def record(self, command: str, code: str, *check_values: str) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            self.logger.info("cmd=%s rc=%s kcv=%s", command, code, ",".join(check_values) or "-")


def attach_file(state_dir: Path) -> logging.Handler:
    """Append audit records to ``state_dir/hsm-audit.log`` (mode 0600) and enable the logger."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "hsm-audit.log"
    path.touch(mode=0o600, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    audit_logger.addHandler(handler)
    audit_logger.setLevel(logging.INFO)
    audit_logger.propagate = False  # the audit trail goes to its file, not the console
    return handler
