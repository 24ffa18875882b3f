"""Onboarding an issuer's card base: ``switch import cards|accounts FILE`` (see the README,
"Loading an issuer's card base"): streaming readers, record checks, the batched importer."""
