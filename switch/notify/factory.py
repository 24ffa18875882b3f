"""Build the configured SMS transport from one setting, so wiring the worker is one line.

Accepted forms (e.g. from a ``SWITCH_SMS`` environment variable or the config file):

* ``console`` (the default): one line per SMS in ``<state_dir>/sms.log`` and on stdout;
* ``file`` / ``file:/path/to/sms.log``: the file only;
* ``smpp://system_id@host:port?source=EDAHABIA&system_type=&enquire_link=30&timeout=10``:
  an SMPP transceiver. The password is taken from ``password_env`` (default
  ``SWITCH_SMPP_PASSWORD``) rather than the URL, so it stays out of process listings and logs;
  ``smpp://system_id:password@...`` is accepted for development.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from switch.notify.console import ConsoleTransport
from switch.notify.smpp import SmppTransport
from switch.notify.transport import SmsTransport

PASSWORD_ENV = "SWITCH_SMPP_PASSWORD"  # noqa: S105 - the variable's name, not a secret


def transport_from_url(
    url: str | None, state_dir: Path, *, password_env: str = PASSWORD_ENV
) -> SmsTransport:
    """The transport ``url`` names; ``ValueError`` naming the part that is wrong."""
    spec = (url or "console").strip()
    if spec == "console":
        return ConsoleTransport(state_dir / "sms.log", stdout=sys.stdout)
    if spec == "file":
        return ConsoleTransport(state_dir / "sms.log")
    if spec.startswith("file:"):
        return ConsoleTransport(Path(spec[len("file:") :]))
    parts = urlsplit(spec)
    if parts.scheme != "smpp":
        raise ValueError(f"sms transport must be console, file[:path] or smpp://..., got {spec!r}")
    if not parts.hostname or not parts.username:
        raise ValueError("smpp url needs system_id@host:port")
    try:
        port = parts.port or 2775
    except ValueError:
        raise ValueError("smpp url port must be a number") from None
    password = unquote(parts.password) if parts.password else os.environ.get(password_env, "")
    q = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    try:
        enquire = float(q.get("enquire_link", "30"))
        timeout = float(q.get("timeout", "10"))
    except ValueError:
        raise ValueError("smpp url enquire_link and timeout must be numbers") from None
    return SmppTransport(
        parts.hostname,
        port,
        system_id=unquote(parts.username),
        password=password,
        system_type=q.get("system_type", ""),
        source_addr=q.get("source", "EDAHABIA"),
        timeout=timeout,
        enquire_link_interval=enquire,
    )


def describe_transport(url: str | None) -> str:
    """``url`` as a banner or a log may show it: a password in an SMPP URL is masked."""
    spec = (url or "console").strip()
    if spec == "console":
        return "console (printed here)"
    parts = urlsplit(spec)
    if parts.scheme == "smpp" and parts.password is not None:
        userinfo, hostport = parts.netloc.rsplit("@", 1)
        masked = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
        return parts._replace(netloc=masked).geturl()
    return spec
