"""Optional TLS with client certificates: a certificate from the configured CA is required."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from switch.api.client import ClientTls, MerchantClient
from switch.api.server import ServerTls, start_grpc_server
from switch.api.testing import ECOM
from switch.core import demo
from switch.core.service import SwitchCore

CARD = demo.CARDS[0]


VALID_FROM = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
VALID_UNTIL = dt.datetime(2049, 12, 31, tzinfo=dt.UTC)  # the last year of X.509's UTCTime


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: ec.EllipticCurvePrivateKey,
    *, ca: bool = False, san: bool = False,
) -> x509.Certificate:  # fmt: skip
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # Fixed, wide validity: the test means the same on any date, and under the shifted
        # clocks of scripts/test-dates.sh (gRPC's TLS checks it against the real clock).
        .not_valid_before(VALID_FROM)
        .not_valid_after(VALID_UNTIL)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        b = b.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return b.sign(signer, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def make_pki(d: Path) -> Path:
    """``ca``, ``server`` (for 127.0.0.1/localhost), ``client`` (signed by ``ca``) and a
    self-signed ``rogue``, each as ``NAME.crt`` + ``NAME.key`` (PEM) in ``d``."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    _write(d / "ca", _cert("test CA", ca_key, "test CA", ca_key, ca=True), ca_key)
    for name, san in (("server", True), ("client", False)):
        k = ec.generate_private_key(ec.SECP256R1())
        _write(d / name, _cert(name, k, "test CA", ca_key, san=san), k)
    rogue = ec.generate_private_key(ec.SECP256R1())
    _write(d / "rogue", _cert("rogue", rogue, "rogue", rogue), rogue)
    return d


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_mutual_tls(pki: Path, tmp_path: Path) -> None:
    async def go() -> None:
        core = await SwitchCore.open(tmp_path / "state", durable=False)
        tls = ServerTls(pki / "server.crt", pki / "server.key", client_ca=pki / "ca.crt")
        server = await start_grpc_server(core, "127.0.0.1", 0, tls=tls)
        target = f"127.0.0.1:{server.bound_port}"
        cvv2 = demo.cvv2(CARD.pan, CARD.expiry)
        try:
            good = ClientTls(pki / "ca.crt", pki / "client.crt", pki / "client.key")
            async with MerchantClient(target, ECOM.merchant_id, ECOM.api_key, tls=good) as c:
                assert (await c.sale(1000, CARD.pan, CARD.expiry, cvv2)).approved
            for bad in (
                ClientTls(pki / "ca.crt"),  # no client certificate
                ClientTls(pki / "ca.crt", pki / "rogue.crt", pki / "rogue.key"),  # wrong CA
            ):
                async with MerchantClient(
                    target, ECOM.merchant_id, ECOM.api_key, tls=bad, timeout=20
                ) as c:
                    with pytest.raises(grpc.aio.AioRpcError) as e:
                        await c.sale(1000, CARD.pan, CARD.expiry, cvv2)
                    assert e.value.code() is grpc.StatusCode.UNAVAILABLE
            async with MerchantClient(target, ECOM.merchant_id, ECOM.api_key, timeout=20) as c:
                with pytest.raises(grpc.aio.AioRpcError):  # plaintext to a TLS port
                    await c.sale(1000, CARD.pan, CARD.expiry, cvv2)
        finally:
            await server.stop(None)
            await core.close()

    asyncio.run(asyncio.wait_for(go(), 60))
