"""The console/file transport: one line per SMS, text restored exactly, failures raise."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from switch.notify.console import ConsoleTransport, read_console_file
from switch.notify.transport import TransportError


def test_appends_one_line_per_sms_and_round_trips_the_text(tmp_path: Path) -> None:
    out = tmp_path / "var" / "sms.log"
    echo = io.StringIO()
    t = ConsoleTransport(out, stdout=echo)
    texts = ["Retrait 5 000,00 DZD\nسحب نقدي", "tab\there \\n literal\r\nend", "plain"]
    ids = [t.send("+213550000001", text, f"alert-{i}") for i, text in enumerate(texts)]
    t.close()
    assert ids == ["console-alert-0", "console-alert-1", "console-alert-2"]
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and echo.getvalue().splitlines() == lines
    parsed = read_console_file(out)
    assert [p[3] for p in parsed] == texts
    assert [p[1:3] for p in parsed] == [(f"alert-{i}", "+213550000001") for i in range(3)]


def test_unwritable_file_raises_transport_error(tmp_path: Path) -> None:
    target = tmp_path / "dir"
    t = ConsoleTransport(target)
    target.mkdir()  # the path is now a directory: appending fails
    with pytest.raises(TransportError, match="cannot write"):
        t.send("+213550000001", "x", "alert-1")


def test_defaults_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    ConsoleTransport().send("+213550000001", "bonjour", "alert-9")
    assert "alert-9\t+213550000001\tbonjour" in capsys.readouterr().out
