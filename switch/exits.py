"""Exit statuses of the ``switch`` client commands (pay, atm, txn, card, account).

One meaning per number, the same in every command, so a script can tell a decline (the
cardholder's problem: try another card) from a refusal (ours: fix the request) from an
unreachable switch (try again later) without reading the text.
"""

from __future__ import annotations

import enum
from typing import Final


class Exit(enum.IntEnum):
    OK = 0  # approved, or done
    DECLINED = 1  # the switch answered with a decline (a response code other than 00)
    USAGE = 2  # bad usage: argparse's own status, missing credentials, unreadable files
    REFUSED = 3  # the switch refused the request (a gRPC error status; an answer failing MAC)
    UNREACHABLE = 4  # cannot connect, no answer in time, or the switch says retry later
    PIPE_CLOSED = 141  # the reader of our output went away (``| head``): 128 + SIGPIPE


EPILOG: Final = (
    "exit status: 0 approved/done, 1 declined, 2 bad usage, 3 refused by the switch "
    "(a gRPC error; for switch atm, an answer whose MAC fails), 4 cannot connect, no answer "
    "in time or the switch is unavailable (retry later); 141 the output pipe was closed"
)
