"""The merchant gRPC API (switch.v1)."""
