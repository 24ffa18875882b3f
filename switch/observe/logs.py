"""The log format of ``switch run`` (and of its SMS worker child): ``--log-format text|json``.

Why one module: every line the process logs -- a transaction's trace (``switch.observe.trace``),
a warning from the ISO listener, an asyncio error -- must carry its time in one format with
its zone, so lines from the switch and from its worker can be merged and read across a DST
change or from another country. The time is ISO 8601 local time with its UTC offset and
milliseconds (``2026-12-03T07:31:13.123+01:00``); the zone is the process's (``TZ``).

``text`` is ``<time> <LEVEL> <logger>: <message>``; a transaction's message is its fields as
``key=value`` pairs (values with spaces or quotes are JSON-quoted, so one line stays one
line). ``json`` is one object per line: ``ts``, ``level``, ``logger``, ``msg`` and, for a
transaction, its fields as top-level keys with their types (``amount`` an integer...).

Cost (a trace line per transaction is on the hot path): the time prefix is rebuilt once
per second, not per line (strftime and the zone lookup are most of what a stdlib
``Formatter.formatTime`` costs), and records skip the thread and process names no format
here prints. (Each line is still one write: stderr is line-buffered, and a bigger buffer
could split a line across writes when other code prints to stderr too.)
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from typing import Final, TextIO

from switch.observe.trace import TxnLine

LOG_FORMATS: Final = ("text", "json")
#: ``--log-level`` values (any case): a typo is refused instead of silently meaning INFO.
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level(text: str) -> str:
    """``argparse`` ``type=`` for ``--log-level``: upper-cased, then checked by ``choices``."""
    return text.upper()


ENV_LOG_FORMAT: Final = "SWITCH_LOG_FORMAT"  # how ``switch run`` tells its children


class _SecondCache:
    """``(prefix, offset)`` of the last whole second formatted: one conversion per second."""

    __slots__ = ("offset", "prefix", "second")

    def __init__(self) -> None:
        self.second = -1
        self.prefix = ""
        self.offset = ""

    def parts(self, second: int) -> tuple[str, str]:
        if second != self.second:
            local = dt.datetime.fromtimestamp(second).astimezone()
            z = local.strftime("%z")  # +0100
            self.prefix = local.strftime("%Y-%m-%dT%H:%M:%S")
            self.offset = f"{z[:3]}:{z[3:]}" if len(z) == 5 else "+00:00"
            self.second = second
        return self.prefix, self.offset


_cache = _SecondCache()


def iso_timestamp(created: float) -> str:
    """``created`` (epoch seconds) as ISO 8601 local time with milliseconds and UTC offset."""
    second = int(created)
    prefix, offset = _cache.parts(second)
    millis = min(int((created - second) * 1000), 999)
    return f"{prefix}.{millis:03d}{offset}"


class TextFormatter(logging.Formatter):
    """``<ISO time> <LEVEL> <logger>: <message>`` (+ the traceback, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"{iso_timestamp(record.created)} {record.levelname} {record.name}: "
            f"{record.getMessage()}"
        )
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line; a transaction's fields are top-level keys, typed."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.msg
        ts = iso_timestamp(record.created)
        if isinstance(msg, TxnLine) and not record.exc_info and not record.stack_info:
            return (
                f'{{"ts":"{ts}","level":"{record.levelname}","logger":"{record.name}",'
                f'"msg":"transaction",{msg.json_fields()}}}'
            )
        doc: dict[str, object] = {"ts": ts, "level": record.levelname, "logger": record.name}
        if isinstance(msg, TxnLine):
            doc["msg"] = "transaction"
            doc.update(msg.fields._asdict())
        else:
            doc["msg"] = record.getMessage()
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), default=str)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of ``--log-format`` (ValueError naming the option for another value)."""
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return TextFormatter()
    raise ValueError(f"--log-format: {log_format!r} is not one of {', '.join(LOG_FORMATS)}")


def env_log_format() -> str:
    """``SWITCH_LOG_FORMAT`` (what ``switch run`` was given) if it is a format, else text."""
    value = os.environ.get(ENV_LOG_FORMAT, "text")
    return value if value in LOG_FORMATS else "text"


def configure_logging(level: str, log_format: str, stream: TextIO | None = None) -> None:
    """The root logger writes to ``stream`` (stderr) at ``level`` in ``log_format``; any
    handler installed earlier is replaced, so no line escapes the format."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(formatter(log_format))
    # nothing here prints them: a record need not look them up (documented switches)
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    value = getattr(logging, str(level).upper(), logging.INFO)
    root.setLevel(value if isinstance(value, int) else logging.INFO)
