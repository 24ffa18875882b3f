"""Build-time helpers (code generation)."""
