"""ISO 8583: specs as data, the native codec, framing, the acquirer server and issuer client."""
