"""Streaming readers of the export files: one record at a time, with where it ends.

The file is read as bytes, line by line, so memory does not grow with the file and the
reader knows the byte offset just past each record: the import stores that offset with each
committed batch and a rerun seeks straight to it (``start``) instead of re-reading what is
already loaded. Line numbers count physical lines from 1 (a CSV header is line 1), as an
editor shows them.

* CSV: a header row names the columns (case and surrounding blanks ignored); a field may
  be quoted, with newlines inside quotes. An unknown or missing column stops the import
  before anything is written (``FormatError``), since every record would be wrong.
* JSON Lines: one object per line, keys as the CSV columns, values strings or integers.

Bytes that are not UTF-8 become U+FFFD, which the field checks reject naming the field.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple


class FormatError(ValueError):
    """The file as a whole cannot be read as the format says (header, encoding)."""


class RawRecord(NamedTuple):
    line: int  # first physical line of the record
    end_offset: int  # byte offset just past it
    end_line: int  # physical lines consumed up to end_offset
    fields: dict[str, str]
    error: str  # '' or why the record could not even be split into fields


def _lines(fh: BinaryIO, offset: int, line: int, pos: list[int]) -> Iterator[str]:
    """Decoded lines from the current position; ``pos`` = [offset, lines] consumed so far."""
    pos[0], pos[1] = offset, line
    for raw in fh:
        pos[0] += len(raw)
        pos[1] += 1
        yield raw.decode("utf-8", errors="replace")


def read_csv(
    fh: BinaryIO, known: frozenset[str], required: frozenset[str], start: int, start_line: int
) -> Iterator[RawRecord]:
    first = fh.readline()
    header_text = first.decode("utf-8-sig", errors="replace")
    try:
        header = next(csv.reader([header_text]))
    except (csv.Error, StopIteration):
        raise FormatError("header: the first line must name the columns") from None
    columns = [c.strip().lower() for c in header]
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise FormatError(
            f"header: unknown column {unknown[0]!r} (known: {', '.join(sorted(known))})"
        )
    missing = sorted(required - set(columns))
    if missing:
        raise FormatError(f"header: missing column {missing[0]!r}")
    if len(set(columns)) != len(columns):
        raise FormatError("header: a column is named twice")
    if start > len(first):
        fh.seek(start)
        offset, line = start, start_line
    else:
        offset, line = len(first), 1
    pos = [offset, line]
    reader = csv.reader(_lines(fh, offset, line, pos), strict=True)
    while True:
        first_line = pos[1] + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # strict: a stray quote; the reader resynchronises on the next line
            yield RawRecord(first_line, pos[0], pos[1], {}, f"malformed CSV record: {exc}")
            continue
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank line
        if len(row) != len(columns):
            yield RawRecord(
                first_line, pos[0], pos[1], {},
                f"malformed record: {len(row)} fields, the header has {len(columns)}",
            )  # fmt: skip
            continue
        fields = dict(zip(columns, map(str.strip, row), strict=True))
        yield RawRecord(first_line, pos[0], pos[1], fields, "")


def read_jsonl(
    fh: BinaryIO, known: frozenset[str], required: frozenset[str], start: int, start_line: int
) -> Iterator[RawRecord]:
    del required  # a missing key is a record's fault, reported per record by the checks
    fh.seek(start)
    offset, line = start, start_line
    for raw in fh:
        offset += len(raw)
        line += 1
        text = raw.decode("utf-8", errors="replace").strip().lstrip("\ufeff")
        if not text:
            continue
        try:
            doc = json.loads(text)
        except ValueError:
            yield RawRecord(line, offset, line, {}, "malformed record: not a JSON object")
            continue
        if not isinstance(doc, dict):
            yield RawRecord(line, offset, line, {}, "malformed record: not a JSON object")
            continue
        fields: dict[str, str] = {}
        error = ""
        for k, v in doc.items():
            if k not in known:
                error = f"{k}: unknown field"
                break
            if isinstance(v, str):
                fields[k] = v.strip()
            elif isinstance(v, int) and not isinstance(v, bool):
                fields[k] = str(v)
            elif v is None:
                fields[k] = ""
            else:
                error = f"{k}: a string or an integer expected"
                break
        yield RawRecord(line, offset, line, fields if not error else {}, error)
