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
here prints. The lines a turn of the event loop logs are written together, once the turn
ends (``BatchingStreamHandler``): one write of whole lines instead of one per line (stderr
is line-buffered, so each line was a system call). A batch stays within ``MAX_WRITE`` bytes,
so a write to a pipe is atomic and never interleaves with the SMS worker's lines; WARNING
and above, and anything logged outside the loop's thread, are written at once.
"""

from __future__ import annotations

import asyncio
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


#: Bytes a batched write holds at most: PIPE_BUF on Linux, the size a pipe writes atomically.
MAX_WRITE: Final = 4096


class BatchingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A ``StreamHandler`` that writes the records of one event-loop turn in one go.

    A record logged in a running loop's thread below WARNING is formatted at once and kept;
    the first one of a turn schedules ``flush`` with ``call_soon``, which writes the kept
    lines in one ``write`` at the end of the turn (before any I/O wait). Order is kept: a
    record written at once (WARNING and above, another thread, no loop) writes the kept
    ones first. What is kept when the process ends normally is written by
    ``logging.shutdown``; a killed process loses at most the lines of the turn it was in."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._kept: list[str] = []
        self._size = 0
        # the loop a flush is scheduled on (None: none is); another loop schedules its own
        # (one that closed before running the flush leaves its lines for the next one)
        self._scheduled: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:  # called with the handler's lock held
        try:
            text = self.format(record) + self.terminator
            loop = None
            if record.levelno < logging.WARNING:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    pass
            if loop is None:
                self._kept.append(text)
                self._write_kept()
                return
            if self._size + len(text) > MAX_WRITE:
                self._write_kept()
            self._kept.append(text)
            self._size += len(text)
            if self._scheduled is not loop:
                self._scheduled = loop
                loop.call_soon(self._flush_soon)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def _write_kept(self) -> None:
        if self._kept:
            text = "".join(self._kept)
            self._kept.clear()
            self._size = 0
            self.stream.write(text)
            self.stream.flush()

    def _flush_soon(self) -> None:
        try:
            self.flush()
        except (OSError, ValueError):  # stderr closed: nothing left to tell
            pass

    def flush(self) -> None:
        self.acquire()
        try:
            self._scheduled = None
            self._write_kept()
        finally:
            self.release()
        super().flush()


def configure_logging(level: str, log_format: str, stream: TextIO | None = None) -> None:
    """The root logger writes to ``stream`` (stderr) at ``level`` in ``log_format``; any
    handler installed earlier is replaced, so no line escapes the format."""
    handler = BatchingStreamHandler(sys.stderr if stream is None else stream)
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
