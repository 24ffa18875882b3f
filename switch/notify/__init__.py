"""Cardholder SMS alerts, delivered from a transactional outbox."""
