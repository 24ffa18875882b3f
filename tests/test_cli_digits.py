"""Numeric command-line options take ASCII digits only: ``int()`` and ``str.isdigit`` accept
Arabic-Indic digits (and ``int()`` also `` 80`` and ``8_0``), which would turn into a port or
a limit nobody typed. Each is refused by argparse with the option named."""

from __future__ import annotations

import argparse

import pytest

from switch.hsm import cli as hsm_cli
from switch.notify.service import build_parser as notify_parser
from switch.observe.endpoints import http_port

BAD = ("٨٠", "\uff18\uff10", " 80", "8_0", "+80")  # Arabic-Indic, full-width


@pytest.mark.parametrize("text", BAD)
def test_http_port_refuses_other_digits(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        http_port(text)


def _hsm_serve(*args: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="switch hsm", exit_on_error=False)
    hsm_cli.add_arguments(parser)
    return parser.parse_args(["serve", *args])


@pytest.mark.parametrize(
    "option", ["--port", "--header-length", "--pin-failure-limit", "--pin-failure-window"]
)
@pytest.mark.parametrize("text", BAD)
def test_hsm_serve_numeric_options_refuse_other_digits(
    option: str, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        _hsm_serve(option, text)
    assert stop.value.code == 2
    assert option in capsys.readouterr().err


def test_hsm_serve_numeric_options_take_ascii() -> None:
    args = _hsm_serve("--port", "1600", "--pin-failure-limit", "5", "--pin-failure-window", "60")
    assert (args.port, args.pin_failure_limit, args.pin_failure_window) == (1600, 5, 60.0)


@pytest.mark.parametrize("text", ["١٢٣", "0", "-5"])
def test_notify_service_parent_pid_refuses_non_ascii_and_non_positive(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    option = next(
        a.option_strings[0]
        for a in notify_parser()._actions
        if a.type is not None and getattr(a.type, "__name__", "") == "_pid"
    )
    with pytest.raises(SystemExit):
        notify_parser().parse_args(["--state-dir", "x", option, text])
    assert option in capsys.readouterr().err
