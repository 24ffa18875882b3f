"""The SMPP transport against a real SMPP peer over TCP (tests/smpp_peer.py)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from switch.notify.console import ConsoleTransport
from switch.notify.factory import transport_from_url
from switch.notify.messages import render_alert, render_otp
from switch.notify.smpp import SmppTransport, encode_parts, user_message_reference
from switch.notify.transport import TransportError
from tests.smpp_peer import ESME_RTHROTTLED, SmppPeer

WHEN = datetime(2026, 11, 29, 13, 5, tzinfo=UTC)
MSISDN = "+213550000001"


@pytest.fixture
def peer() -> Iterator[SmppPeer]:
    p = SmppPeer()
    yield p
    p.stop()


def _transport(peer: SmppPeer, **kw: object) -> SmppTransport:
    args: dict[str, object] = {"system_id": "switch", "password": "secret", "timeout": 30.0}
    args.update(kw)
    return SmppTransport("127.0.0.1", peer.port, **args)  # type: ignore[arg-type]


def test_bilingual_alert_survives_the_round_trip_as_concatenated_ucs2(peer: SmppPeer) -> None:
    text = render_alert("withdrawal", "***1234", 500000, 12, "GAB POSTE ALGER", WHEN, 1_234_567)
    t = _transport(peer)
    try:
        ids = t.send(MSISDN, text, "alert-42")
    finally:
        t.close()
    [msg] = peer.messages
    assert msg.text == text
    assert msg.data_coding == 0x08 and msg.parts == 3
    assert msg.destination == "213550000001"
    assert msg.user_message_reference == 42
    assert ids.split(",") == msg.message_ids
    assert all(s.dest_addr_ton == 1 and len(s.short_message) <= 140 for s in peer.submits)
    assert peer.binds == [("switch", "secret", 0x34)]
    assert peer.unbinds == 1


def test_short_arabic_single_part_and_french_gsm7(peer: SmppPeer) -> None:
    t = _transport(peer)
    ar = render_alert("activation", "***9876", 0, 12, "-", WHEN, 0, lang="ar")
    fr = render_alert("payment", "***9876", 123456, 12, "SUPERETTE [EL] € ~", WHEN, 5, lang="fr")
    otp = render_otp("482913", "JUMIA DZ", 250000, 12)
    try:
        t.send(MSISDN, ar, "alert-1")
        t.send(MSISDN, fr, "alert-2")
        t.send(MSISDN, otp, "alert-3")
    finally:
        t.close()
    got = {m.user_message_reference: m for m in peer.messages}
    assert got[1].text == ar and got[1].data_coding == 0x08
    assert got[2].text == fr and got[2].data_coding == 0x00 and got[2].parts == 1
    assert got[3].text == otp and "482913" in got[3].text
    assert peer.binds and len(peer.binds) == 1  # one session for all three


def test_long_gsm7_text_is_split_without_cutting_an_escape(peer: SmppPeer) -> None:
    text = "a" * 152 + "€" + "b" * 200
    coding, esm, parts = encode_parts(text, "alert-7")
    assert coding == 0 and esm == 0x40
    assert all(len(p) - 6 <= 153 for p in parts)
    t = _transport(peer)
    try:
        t.send(MSISDN, text, "alert-7")
    finally:
        t.close()
    [msg] = peer.messages
    assert msg.text == text and msg.parts == 3


def test_refused_submit_raises_and_the_session_stays(peer: SmppPeer) -> None:
    t = _transport(peer)
    try:
        peer.reject_next(1, ESME_RTHROTTLED)
        with pytest.raises(TransportError, match="0x00000058"):
            t.send(MSISDN, "hello", "alert-5")
        t.send(MSISDN, "hello", "alert-5")
    finally:
        t.close()
    assert [m.text for m in peer.messages] == ["hello"]
    assert len(peer.binds) == 1


def test_dropped_connection_raises_then_reconnects(peer: SmppPeer) -> None:
    t = _transport(peer)
    try:
        peer.drop_next(1)
        with pytest.raises(TransportError):
            t.send(MSISDN, "first", "alert-8")
        assert peer.messages == []
        t.send(MSISDN, "first", "alert-8")
    finally:
        t.close()
    assert [m.text for m in peer.messages] == ["first"]
    assert len(peer.binds) == 2


def test_session_killed_while_idle_is_probed_and_rebuilt_before_the_submit(
    peer: SmppPeer,
) -> None:
    t = _transport(peer, probe_after=0.0)
    try:
        t.send(MSISDN, "one", "alert-1")
        peer.kill_connections()  # SMS centre restart
        t.send(MSISDN, "two", "alert-2")  # no error: the probe found the dead session
    finally:
        t.close()
    assert [m.text for m in peer.messages] == ["one", "two"]
    assert len(peer.binds) == 2
    # Without the probe the dead session is only found by the submit itself, which fails.
    t = _transport(peer, probe_after=3600.0)
    try:
        t.send(MSISDN, "three", "alert-3")
        peer.kill_connections()
        with pytest.raises(TransportError):
            t.send(MSISDN, "four", "alert-4")
        t.send(MSISDN, "four", "alert-4")
    finally:
        t.close()
    assert [m.text for m in peer.messages] == ["one", "two", "three", "four"]


def test_keepalive_sends_enquire_link_when_idle(peer: SmppPeer) -> None:
    t = _transport(peer, enquire_link_interval=0.2)
    try:
        t.send(MSISDN, "x", "alert-1")
        assert peer.wait_for(lambda: peer.enquire_links >= 2, timeout=30)
        t.enquire_link()
    finally:
        t.close()


def test_peer_enquire_link_during_a_submit_is_answered(peer: SmppPeer) -> None:
    peer.enquire_before_response()
    t = _transport(peer)
    try:
        t.send(MSISDN, "y" * 300, "alert-9")
    finally:
        t.close()
    assert [m.text for m in peer.messages] == ["y" * 300]


def test_bind_failures_and_bad_credentials_raise(peer: SmppPeer) -> None:
    peer.fail_binds(1)
    t = _transport(peer)
    try:
        with pytest.raises(TransportError, match="bind"):
            t.send(MSISDN, "x", "alert-1")
        t.send(MSISDN, "x", "alert-1")
    finally:
        t.close()
    bad = _transport(peer, password="wrong")
    try:
        with pytest.raises(TransportError, match="bind"):
            bad.send(MSISDN, "x", "alert-2")
    finally:
        bad.close()
    assert len(peer.messages) == 1


def test_no_smsc_listening_raises_transport_error() -> None:
    # a port held bound, never listening: refused, and no other process can listen there
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        t = SmppTransport("127.0.0.1", held.getsockname()[1], system_id="s", password="p",
                          timeout=1.0)  # fmt: skip
        try:
            with pytest.raises(TransportError):
                t.send(MSISDN, "x", "alert-1")
        finally:
            t.close()


def test_credentials_longer_than_smpp_allows_are_refused_up_front() -> None:
    with pytest.raises(ValueError, match="password"):
        SmppTransport("127.0.0.1", 1, system_id="s", password="123456789", keepalive=False)
    with pytest.raises(ValueError, match="system_id"):
        SmppTransport("127.0.0.1", 1, system_id="x" * 16, password="p", keepalive=False)


def test_invalid_msisdn_is_refused() -> None:
    t = SmppTransport("127.0.0.1", 1, system_id="s", password="p", keepalive=False)
    with pytest.raises(TransportError, match="msisdn"):
        t.send("12ab", "x", "alert-1")
    t.close()


def test_user_message_reference_is_the_outbox_id() -> None:
    assert user_message_reference("alert-42") == 42
    assert user_message_reference("alert-65578") == 42
    assert 0 <= user_message_reference("no-digits-here") < 65536


def test_transport_from_url_builds_a_working_smpp_transport(
    peer: SmppPeer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SWITCH_SMPP_PASSWORD", "secret")
    t = transport_from_url(f"smpp://switch@127.0.0.1:{peer.port}?source=POSTE&timeout=30", tmp_path)
    try:
        t.send(MSISDN, "via url", "alert-77")
    finally:
        t.close()
    assert [m.text for m in peer.messages] == ["via url"]
    assert peer.submits[0].source_addr == "POSTE"


def test_transport_from_url_console_file_and_errors(tmp_path: Path) -> None:
    t = transport_from_url("file", tmp_path)
    assert isinstance(t, ConsoleTransport) and t.path == tmp_path / "sms.log"
    t2 = transport_from_url(f"file:{tmp_path / 'x.log'}", tmp_path)
    assert isinstance(t2, ConsoleTransport) and t2.path == tmp_path / "x.log"
    assert isinstance(transport_from_url(None, tmp_path), ConsoleTransport)
    for bad, field in [
        ("http://x", "sms transport"),
        ("smpp://host:1", "system_id"),
        ("smpp://a@h:xx", "port"),
        ("smpp://a@h:1?timeout=soon", "timeout"),
    ]:
        with pytest.raises(ValueError, match=field):
            transport_from_url(bad, tmp_path)


def test_unparsable_answer_drops_the_session_and_the_next_send_rebinds(peer: SmppPeer) -> None:
    t = _transport(peer)
    try:
        peer.garbage_next(1)
        with pytest.raises(TransportError):
            t.send(MSISDN, "garbled", "alert-1")
        t.send(MSISDN, "clean", "alert-2")
    finally:
        t.close()
    assert [m.text for m in peer.messages] == ["clean"]
    assert len(peer.binds) == 2


def test_debug_logging_never_shows_the_smpp_password(
    peer: SmppPeer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    peer.password = "s3cr3tpw"
    t = _transport(peer, password="s3cr3tpw")
    try:
        t.send(MSISDN, "x", "alert-1")
    finally:
        t.close()
    assert peer.messages
    assert "s3cr3tpw" not in caplog.text
    assert b"s3cr3tpw".hex() not in caplog.text


def test_delivery_receipts_on_the_session_are_acknowledged(peer: SmppPeer) -> None:
    peer.receipt_before_response()
    t = _transport(peer, registered_delivery=True)
    try:
        t.send(MSISDN, "with receipt", "alert-3")
    finally:
        t.close()
    assert [m.text for m in peer.messages] == ["with receipt"]
    assert peer.wait_for(lambda: peer.receipts_acknowledged == 1, timeout=30)
    [receipt] = t.receipts
    assert receipt["source_addr"] == MSISDN.lstrip("+")
    assert "stat:DELIVRD" in receipt["text"]
