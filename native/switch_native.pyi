"""Type stubs for the compiled core (keep in step with native/src/*.rs)."""

__version__: str
