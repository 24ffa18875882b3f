"""Build the configured SMS transport from one setting, so wiring the worker is one line.

Accepted forms (e.g. from a ``SWITCH_SMS`` environment variable or the config file):

* ``console`` (the default): one line per SMS in ``<state_dir>/sms.log`` and on stdout;
* ``file`` / ``file:/path/to/sms.log``: the file only;
* ``smpp://system_id@host:port?source=EDAHABIA&system_type=&enquire_link=30&timeout=10``:
  an SMPP transceiver. The password is taken from ``password_env`` (default
  ``SWITCH_SMPP_PASSWORD``) rather than the URL, so it stays out of process listings and logs;
  ``smpp://system_id:password@...`` is accepted for development.

One-time codes: an SMS centre gets them (it delivers to the handset); the console and file
transports print ``******`` in their place unless ``SWITCH_SMS_SHOW_CODES=1`` (development:
the demo's ``make run`` sets it so that ``switch pay verify`` can be tried end to end).
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
SHOW_CODES_ENV = "SWITCH_SMS_SHOW_CODES"
_YES = ("1", "yes", "true", "on")
_NO = ("", "0", "no", "false", "off")


def show_codes_setting(value: str | None = None) -> bool:
    """``SWITCH_SMS_SHOW_CODES`` (``value`` or the environment): may the console and file
    transports print one-time codes? Default no; ``ValueError`` naming it for a bad value."""
    text = (os.environ.get(SHOW_CODES_ENV, "") if value is None else value).strip().lower()
    if text in _YES:
        return True
    if text in _NO:
        return False
    raise ValueError(f"{SHOW_CODES_ENV} must be 1 (development: print one-time codes) or 0")


def transport_from_url(
    url: str | None,
    state_dir: Path,
    *,
    password_env: str = PASSWORD_ENV,
    show_codes: bool | None = None,
) -> SmsTransport:
    """The transport ``url`` names; ``ValueError`` naming the part that is wrong.

    ``show_codes`` (default: ``SWITCH_SMS_SHOW_CODES``) lets a console/file transport print
    one-time codes; it means nothing to SMPP, which always delivers them."""
    spec = (url or "console").strip()
    if spec in ("console", "file") or spec.startswith("file:"):
        shows = show_codes_setting() if show_codes is None else show_codes
        if spec == "console":
            return ConsoleTransport(state_dir / "sms.log", stdout=sys.stdout, shows_secrets=shows)
        if spec == "file":
            return ConsoleTransport(state_dir / "sms.log", shows_secrets=shows)
        return ConsoleTransport(Path(spec[len("file:") :]), shows_secrets=shows)
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


def describe_transport(url: str | None, *, show_codes: bool = False) -> str:
    """``url`` as a banner or a log may show it: a password in an SMPP URL is masked, and a
    console/file says whether it prints one-time codes."""
    spec = (url or "console").strip()
    codes = (
        f"one-time codes SHOWN ({SHOW_CODES_ENV}=1, development only)"
        if show_codes
        else f"one-time codes masked, {SHOW_CODES_ENV}=1 shows them"
    )
    if spec == "console":
        return f"console (printed here, {codes})"
    if spec == "file" or spec.startswith("file:"):
        return f"{spec} ({codes})"
    parts = urlsplit(spec)
    if parts.scheme == "smpp" and parts.password is not None:
        userinfo, hostport = parts.netloc.rsplit("@", 1)
        masked = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
        return parts._replace(netloc=masked).geturl()
    return spec
