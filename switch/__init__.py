"""switch: a card payment switch (ISO 8583 acquiring, gRPC merchants, software HSM, CCP ledger)."""

__version__ = "0.1.0"
