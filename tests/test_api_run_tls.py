"""``switch run --grpc-tls-cert/--grpc-tls-key [--grpc-client-ca]`` for real: the switch as a
subprocess on free ports, ``switch pay`` (another process) and the Python client as merchants.

TLS: a sale with ``--tls-ca`` is approved, a plaintext client is not served. Mutual TLS: a
client certificate from the CA is required; none, or one from another CA, is refused. Bad
flags stop ``switch run`` at start with one line naming the flag (exit 1, no traceback);
the checks behind that line are also exercised in process, one per kind of bad file.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from switch.api.client import ClientTls, MerchantClient
from switch.api.server import ServerTls, transport
from switch.api.testing import ECOM
from switch.api.tls_files import TlsFileError, client_tls, server_tls
from switch.core import demo
from tests.switch_proc import bound_ports, stop, wait_ready
from tests.test_api_tls import make_pki

SWITCH = [sys.executable, "-m", "switch.cli"]
CARD = demo.CARDS[0]
CVV2 = demo.cvv2(CARD.pan, CARD.expiry)
SALE = ["sale", "10", "--pan", CARD.pan, "--expiry", CARD.expiry, "--cvv2", CVV2]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = make_pki(tmp_path_factory.mktemp("pki"))
    (d / "junk.pem").write_text("not a PEM file\n")
    return d


def _run_args(state: Path, grpc_port: int) -> list[str]:
    return [
        *SWITCH, "run", "--state-dir", str(state), "--iso-port", "0",
        "--grpc-port", str(grpc_port), "--http-port", "-1", "--sms-worker", "off", "--no-fsync",
    ]  # fmt: skip


@contextmanager
def _switch(state: Path, out: Path, tls_args: list[str]) -> Iterator[str]:
    """A running ``switch run`` with ``tls_args``; yields its gRPC target, stops it after."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SWITCH_SMS", None)
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [*_run_args(state, 0), *tls_args], stdout=sink, stderr=subprocess.STDOUT, env=env
        )
    try:
        wait_ready(proc, out, 30)
        # port 0, then the bound one: a port picked free beforehand can be taken meanwhile
        yield f"127.0.0.1:{bound_ports(out)[1]}"
    finally:
        stop(proc)


def pay(target: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SWITCH_API_KEY": ECOM.api_key, "SWITCH_MERCHANT_ID": ECOM.merchant_id}
    return subprocess.run(
        [*SWITCH, "pay", "--target", target, "--timeout", "20", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )


def _python_sale(target: str, tls: ClientTls | None) -> grpc.StatusCode | None:
    """A sale through ``MerchantClient``: None if approved, else the refusal's status code."""

    async def go() -> grpc.StatusCode | None:
        async with MerchantClient(target, ECOM.merchant_id, ECOM.api_key, tls=tls, timeout=20) as c:
            try:
                r = await c.sale(1000, CARD.pan, CARD.expiry, CVV2)
            except grpc.aio.AioRpcError as e:
                return e.code()
            assert r.approved, r
            return None

    return asyncio.run(asyncio.wait_for(go(), 60))


def test_tls_sale_with_switch_pay(pki: Path, state: Path, tmp_path: Path) -> None:
    out = tmp_path / "switch.out"
    tls = ["--grpc-tls-cert", str(pki / "server.crt"), "--grpc-tls-key", str(pki / "server.key")]
    with _switch(state, out, tls) as target:
        assert f"gRPC merchant API on {target} (TLS)\n" in out.read_text()
        r = pay(target, "--tls-ca", str(pki / "ca.crt"), "--key", "tls-1", *SALE)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["approved"] is True
        again = pay(target, "--tls-ca", str(pki / "ca.crt"), "--key", "tls-1", *SALE)
        assert again.returncode == 0 and json.loads(again.stdout)["replayed"] is True
        plain = pay(target, *SALE)  # plaintext to a TLS port: not served
        assert plain.returncode == 4 and "UNAVAILABLE" in plain.stderr
        wrong_ca = pay(target, "--tls-ca", str(pki / "rogue.crt"), *SALE)  # can't trust it
        assert wrong_ca.returncode == 4 and "UNAVAILABLE" in wrong_ca.stderr
        assert _python_sale(target, ClientTls(pki / "ca.crt")) is None
    assert "Traceback" not in out.read_text()


def test_mutual_tls_requires_a_client_certificate(pki: Path, state: Path, tmp_path: Path) -> None:
    out = tmp_path / "switch.out"
    tls = [
        "--grpc-tls-cert", str(pki / "server.crt"), "--grpc-tls-key", str(pki / "server.key"),
        "--grpc-client-ca", str(pki / "ca.crt"),
    ]  # fmt: skip
    with _switch(state, out, tls) as target:
        assert f"gRPC merchant API on {target} (TLS + client certificates)\n" in out.read_text()
        ca = ["--tls-ca", str(pki / "ca.crt")]
        mine = ["--tls-cert", str(pki / "client.crt"), "--tls-key", str(pki / "client.key")]
        r = pay(target, *ca, *mine, *SALE)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["approved"] is True
        anonymous = pay(target, *ca, *SALE)
        assert anonymous.returncode == 4 and "UNAVAILABLE" in anonymous.stderr
        unavailable = grpc.StatusCode.UNAVAILABLE
        assert _python_sale(target, ClientTls(pki / "ca.crt")) is unavailable
        rogue = ClientTls(pki / "ca.crt", pki / "rogue.crt", pki / "rogue.key")
        assert _python_sale(target, rogue) is unavailable
        good = ClientTls(pki / "ca.crt", pki / "client.crt", pki / "client.key")
        assert _python_sale(target, good) is None


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--grpc-tls-cert", "{pki}/server.crt"], "--grpc-tls-cert: given without --grpc-tls-key"),
        (
            ["--grpc-tls-cert", "{pki}/server.crt", "--grpc-tls-key", "{pki}/client.key"],
            "--grpc-tls-key: {pki}/client.key is not the private key of the certificate",
        ),
    ],
)
def test_bad_flags_stop_switch_run(
    pki: Path, tmp_path: Path, flags: list[str], message: str
) -> None:
    args = [f.format(pki=pki) for f in flags]
    r = subprocess.run(
        [*_run_args(tmp_path / "state", 0), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"switch run: {message.format(pki=pki)}"), lines
    assert "Traceback" not in r.stdout + r.stderr
    assert not (tmp_path / "state").exists()  # stopped before creating anything


def test_server_tls_checks_name_the_flag(pki: Path, tmp_path: Path) -> None:
    cert, key, ca = pki / "server.crt", pki / "server.key", pki / "ca.crt"
    missing, junk = tmp_path / "nope.pem", pki / "junk.pem"
    assert server_tls(None, None, None) is None
    assert server_tls(cert, key, None) == ServerTls(cert, key, None)
    assert server_tls(cert, key, ca) == ServerTls(cert, key, ca)
    cases: list[tuple[tuple[Path | None, Path | None, Path | None], str]] = [
        ((None, key, None), "--grpc-tls-key: given without --grpc-tls-cert"),
        ((None, None, ca), "--grpc-client-ca: needs --grpc-tls-cert and --grpc-tls-key"),
        ((missing, key, None), f"--grpc-tls-cert: cannot read {missing}: No such file"),
        ((cert, missing, None), f"--grpc-tls-key: cannot read {missing}: No such file"),
        ((cert, key, missing), f"--grpc-client-ca: cannot read {missing}: No such file"),
        ((junk, key, None), f"--grpc-tls-cert: {junk} holds no PEM certificate"),
        ((key, key, None), f"--grpc-tls-cert: {key} holds no PEM certificate"),
        ((cert, junk, None), f"--grpc-tls-key: {junk} holds no PEM private key"),
        ((cert, cert, None), f"--grpc-tls-key: {cert} holds no PEM private key"),
        ((cert, pki / "rogue.key", None), "is not the private key of the certificate"),
        ((cert, key, junk), f"--grpc-client-ca: {junk} holds no PEM certificate"),
        ((cert, key, pki), "--grpc-client-ca: cannot read"),  # a directory
    ]
    for args, message in cases:
        with pytest.raises(TlsFileError) as e:
            server_tls(*args)
        assert message in str(e.value), (args, str(e.value))
        assert "PRIVATE KEY" not in str(e.value)


def test_encrypted_key_is_refused_without_prompting(pki: Path, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    clear = serialization.load_pem_private_key((pki / "server.key").read_bytes(), None)
    enc = tmp_path / "enc.key"
    enc.write_bytes(
        clear.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(TlsFileError, match=r"--grpc-tls-key: .* is encrypted"):
        server_tls(pki / "server.crt", enc, None)


def test_client_tls_checks_and_transport_names(pki: Path) -> None:
    ca, cert, key = pki / "ca.crt", pki / "client.crt", pki / "client.key"
    assert client_tls(None, None, None) is None
    assert client_tls(ca, None, None) == ClientTls(ca)
    assert client_tls(ca, cert, key) == ClientTls(ca, cert, key)
    for args, message in [
        ((None, cert, key), "--tls-cert: needs --tls-ca"),
        ((None, None, key), "--tls-key: needs --tls-ca"),
        ((ca, cert, None), "--tls-cert: given without --tls-key"),
        ((ca, None, key), "--tls-key: given without --tls-cert"),
        ((ca, cert, pki / "server.key"), "--tls-key: "),
        ((pki / "junk.pem", None, None), "--tls-ca: "),
    ]:
        with pytest.raises(TlsFileError, match=message):
            client_tls(*args)
    assert transport(None) == "plaintext"
    assert transport(ServerTls(cert, key)) == "TLS"
    assert transport(ServerTls(cert, key, ca)) == "TLS + client certificates"


def test_switch_pay_bad_tls_flag_is_one_line(pki: Path) -> None:
    r = pay("127.0.0.1:1", "--tls-cert", str(pki / "client.crt"), *SALE)
    assert r.returncode == 2
    assert r.stderr.strip() == "pay: --tls-cert: needs --tls-ca (the CA of the server certificate)"
