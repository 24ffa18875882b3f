"""Codes of the internal (GL) accounts the ledger posts fees and interbank legs to.

Each terminal, merchant and biller has its own settlement account (in the store); these are
the few shared ones every store must have (the demo seeding creates them).
"""

from typing import Final

GL_FEES: Final = "GL-FEES"  # withdrawal fees earned
GL_INTERBANK_ATM: Final = "GL-INTERBANK-ATM"  # cash paid out by other banks' ATMs for our cards
GL_INTERBANK_POS: Final = "GL-INTERBANK-POS"  # our cards' payments at other acquirers' merchants
