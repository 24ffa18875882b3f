"""The Prometheus text exposition format, version 0.0.4, written by hand.

A few dozen lines instead of a client library: the switch exposes a handful of families
built from state its parts already keep, at scrape time, so nothing needs registering and
the hot path never touches a metrics object.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = Mapping[str, str]
Sample = tuple[Labels, int | float]


class Kind(enum.Enum):
    COUNTER = "counter"
    GAUGE = "gauge"


def _escape(value: str) -> str:
    """Label values: backslash, double quote and newline escaped as the format requires."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def _value(value: int | float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value) if isinstance(value, int) else repr(float(value))


class Exposition:
    """Families in the order added, each with its ``# HELP`` and ``# TYPE`` lines."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(self, name: str, kind: Kind, help_text: str, samples: Iterable[Sample]) -> None:
        if kind is Kind.COUNTER and not name.endswith("_total"):
            raise ValueError(f"counter {name}: the name must end in _total")
        self._lines.append(f"# HELP {name} {help_text}")
        self._lines.append(f"# TYPE {name} {kind.value}")
        for labels, value in samples:
            self._lines.append(f"{name}{_labels(labels)} {_value(value)}")

    def single(self, name: str, kind: Kind, help_text: str, value: int | float) -> None:
        self.family(name, kind, help_text, [({}, value)])

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"
