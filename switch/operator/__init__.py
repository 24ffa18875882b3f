"""Operator tools: the ``Operator`` gRPC service, its credentials, audit trail and CLI.

An issuer's operations team finds transactions, looks at and blocks cards, and reads account
balances without SQL and without touching the running switch's files: every action goes
through the running switch (so a blocked card is declined at once) and is audited in its store.
"""
