"""The channel-neutral authorization core (DESIGN.md section 1)."""
