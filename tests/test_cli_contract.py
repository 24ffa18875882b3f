"""What every ``switch`` command promises (issue 15, command line): each option explains
itself in ``--help``, the exit statuses are documented, ``--log-level`` refuses a typo, a
closed output pipe ends quietly, and ``make run`` passes ARGS without reinstalling."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from switch import cli

ROOT = Path(__file__).resolve().parents[1]
SWITCH = [sys.executable, "-m", "switch.cli"]


def _actions(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, f"{path} {name}")
        else:
            yield path, action


def test_every_option_and_argument_has_help() -> None:
    missing = [
        f"{path} {'/'.join(a.option_strings) or a.dest}"
        for path, a in _actions(cli.build_parser(), "switch")
        if not a.help  # argparse.SUPPRESS (a deliberately hidden option) is a help text
    ]
    assert missing == []


@pytest.mark.parametrize(
    "command", [["pay"], ["pay", "sale"], ["atm", "withdraw"], ["txn", "search"], ["card", "block"]]
)
def test_exit_statuses_are_in_help(command: list[str]) -> None:
    r = subprocess.run([*SWITCH, *command, "--help"], capture_output=True, text=True, timeout=30)
    text = " ".join(r.stdout.split())
    assert r.returncode == 0
    for status in ("0 approved/done", "1 declined", "2 bad usage", "3 refused", "4 cannot"):
        assert status in text, (command, text)


def test_log_level_is_validated(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "--log-level", "chatty"])
    assert exc.value.code == 2 and "argument --log-level" in capsys.readouterr().err
    parser = cli.build_parser()
    assert parser.parse_args(["run", "--log-level", "debug"]).log_level == "DEBUG"


def test_a_closed_pipe_ends_quietly() -> None:
    """``switch demo show --json | head -c0``: the reader is gone before the first write."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        r = subprocess.run(
            [*SWITCH, "demo", "show", "--json"],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=30,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert (r.returncode, r.stderr) == (141, "")


# ---- make run ------------------------------------------------------------------------------


def _tree(tmp: Path) -> Path:
    """The Makefile in a tree of its inputs, the venv faked: `make -n` shows what it would do."""
    shutil.copy(ROOT / "Makefile", tmp / "Makefile")
    for rel in (
        "requirements.txt", "requirements-dev.txt", "setup.py", "pyproject.toml",
        "native/Cargo.toml", "native/src/lib.rs", "switch/core/x.pyx", "proto/switch/v1/a.proto",
        "switch/devtools/genproto.py", ".venv/bin/python",
    ):  # fmt: skip
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text("")
    return tmp


def _make_n(tree: Path, *args: str) -> str:
    r = subprocess.run(
        ["make", "-n", "--no-print-directory", "-C", str(tree), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def _touch_later(path: Path, than: Path) -> None:
    """Make ``path`` newer than ``than`` without waiting on the clock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    t = than.stat().st_mtime_ns + 10_000_000_000
    os.utime(path, ns=(t, t))


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_run_passes_args_and_skips_an_unchanged_install(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    first = _make_n(tree, "run")  # a fresh clone: everything is built
    for step in ("requirements-dev.txt", "maturin develop", "pip install", "genproto"):
        assert step in first, first
    newest = tree / "proto/switch/v1/a.proto"
    for stamp in (".deps-stamp", ".native-stamp", ".install-stamp"):
        _touch_later(tree / ".venv" / stamp, newest)
        newest = tree / ".venv" / stamp
    _touch_later(tree / "switch/gen/.genproto-stamp", newest)
    again = _make_n(tree, "run", "ARGS=--iso-port 9583 --log-level debug")
    assert again.strip().splitlines() == [
        "SWITCH_SMS_SHOW_CODES=1 .venv/bin/switch run --iso-port 9583 --log-level debug"
    ]
    assert "SWITCH_SMS_SHOW_CODES=0 " in _make_n(tree, "run", "SWITCH_SMS_SHOW_CODES=0")
    # a changed .proto regenerates the stubs only; a changed .pyx reinstalls only
    _touch_later(tree / "proto/switch/v1/a.proto", tree / "switch/gen/.genproto-stamp")
    proto = _make_n(tree, "run")
    assert "genproto" in proto and "pip install" not in proto
    _touch_later(tree / "switch/gen/.genproto-stamp", tree / "proto/switch/v1/a.proto")
    _touch_later(tree / "switch/core/x.pyx", tree / "switch/gen/.genproto-stamp")
    pyx = _make_n(tree, "run")
    assert "pip install -q --no-build-isolation" in pyx and "genproto" not in pyx
