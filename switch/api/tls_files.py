"""Check the TLS files named on the command line before anything is served or sent.

grpc reads the PEM files given to it without saying which one is wrong: a typo'd path is a
traceback, a key of another certificate fails only at the first handshake, as an opaque
UNAVAILABLE on the client's side. So ``switch run`` and ``switch pay`` check their files here
first, with the standard library's ``ssl`` (readable, PEM, the key is the certificate's, not
encrypted), and a bad file is one line naming its flag. Messages name files, never contents.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import NoReturn

from switch.api.client import ClientTls
from switch.api.server import ServerTls


class TlsFileError(ValueError):
    """A TLS flag is missing its partner or names a file that cannot serve; the text names it."""


class _EncryptedKey(Exception):
    """Raised by the password callback: grpc cannot use a passphrase-protected key."""


def _no_password() -> NoReturn:
    raise _EncryptedKey


def _readable(flag: str, path: Path) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as e:
        raise TlsFileError(f"{flag}: cannot read {path}: {e.strerror or e}") from None


def _certificates(flag: str, path: Path) -> None:
    """``path`` is readable and holds at least one PEM certificate."""
    _readable(flag, path)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(path))
    except (ssl.SSLError, ValueError):
        raise TlsFileError(f"{flag}: {path} holds no PEM certificate") from None


def _key_pair(cert_flag: str, cert: Path, key_flag: str, key: Path) -> None:
    """``key`` is an unencrypted PEM private key belonging to the certificate in ``cert``."""
    _certificates(cert_flag, cert)
    _readable(key_flag, key)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(
            str(cert), str(key), password=_no_password
        )
    except _EncryptedKey:
        raise TlsFileError(
            f"{key_flag}: {key} is encrypted; give the key as unencrypted PEM "
            "(readable only by the switch's user)"
        ) from None
    except ssl.SSLError as e:
        if e.reason == "KEY_VALUES_MISMATCH":
            raise TlsFileError(
                f"{key_flag}: {key} is not the private key of the certificate in {cert_flag}"
            ) from None
        raise TlsFileError(f"{key_flag}: {key} holds no PEM private key") from None


def server_tls(cert: Path | None, key: Path | None, client_ca: Path | None) -> ServerTls | None:
    """``switch run --grpc-tls-cert/--grpc-tls-key [--grpc-client-ca]`` -> ``ServerTls``.

    Neither cert nor key: plaintext (``None``). Cert and key: TLS. With the client CA as well:
    mutual TLS, every client must present a certificate that CA signed.
    """
    if cert is None and key is None:
        if client_ca is not None:
            raise TlsFileError(
                "--grpc-client-ca: needs --grpc-tls-cert and --grpc-tls-key (client "
                "certificates are asked for only over TLS)"
            )
        return None
    if cert is None:
        raise TlsFileError("--grpc-tls-key: given without --grpc-tls-cert (both or neither)")
    if key is None:
        raise TlsFileError("--grpc-tls-cert: given without --grpc-tls-key (both or neither)")
    _key_pair("--grpc-tls-cert", cert, "--grpc-tls-key", key)
    if client_ca is not None:
        _certificates("--grpc-client-ca", client_ca)
    return ServerTls(cert, key, client_ca)


def client_tls(ca: Path | None, cert: Path | None, key: Path | None) -> ClientTls | None:
    """``switch pay --tls-ca [--tls-cert --tls-key]`` -> ``ClientTls`` (``None``: plaintext)."""
    if ca is None:
        for flag, given in (("--tls-cert", cert), ("--tls-key", key)):
            if given is not None:
                raise TlsFileError(f"{flag}: needs --tls-ca (the CA of the server certificate)")
        return None
    _certificates("--tls-ca", ca)
    if cert is None and key is None:
        return ClientTls(ca)
    if cert is None:
        raise TlsFileError("--tls-key: given without --tls-cert (both or neither)")
    if key is None:
        raise TlsFileError("--tls-cert: given without --tls-key (both or neither)")
    _key_pair("--tls-cert", cert, "--tls-key", key)
    return ClientTls(ca, cert, key)
