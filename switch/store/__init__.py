"""Storage: one interface, SQLite (embedded default) and PostgreSQL backends."""
