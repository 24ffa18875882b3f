"""One-time codes that an older release stored in clear in ``alerts.text``: sealed or redacted.

Releases before ``switch.notify.sealing`` wrote the OTP SMS text, code included, into the
outbox. When the switch opens such a store (once: a ``settings`` row remembers it) every such
row is rewritten, and no copy of the clear text is left in the file or its WAL
(``SqliteStore.rewrite_alert_texts``):

* not yet sent (``pending``, or ``parked`` for an operator to requeue): the code is sealed,
  exactly as ``SwitchCore.start_otp`` now stores it, so the SMS still goes out with its code;
* already ``sent``: the code is replaced by ``******``. The cardholder has it; the switch
  needs no copy (``otps`` keeps its HMAC, which is all verification uses), and a code older
  than its few minutes of validity is worthless anyway.
"""

from __future__ import annotations

import logging

from switch.notify.messages import clear_otp_text
from switch.notify.sealing import PREFIX, AlertSeal
from switch.store import SwitchStore

SETTING = "alerts.otp_codes_sealed"
log = logging.getLogger("switch.notify.reseal")


def seal_clear_otp_alerts(store: SwitchStore, seal: AlertSeal) -> tuple[int, int]:
    """Seal the unsent clear OTP texts of ``store`` and redact the sent ones, once per store;
    ``(sealed, redacted)``."""
    if store.setting(SETTING) is not None:
        return 0, 0
    rows = store.query(
        "SELECT alert_id, msisdn, text, status FROM alerts "
        "WHERE text <> '' AND substr(text, 1, ?) <> ?",
        (len(PREFIX), PREFIX),
    )
    texts: list[tuple[int, str]] = []
    sealed = redacted = 0
    for alert_id, msisdn, text, status in rows:
        found = clear_otp_text(str(text))
        if found is None:
            continue
        if status == "sent":
            texts.append((int(alert_id), found.masked()))
            redacted += 1
        else:
            texts.append((int(alert_id), seal.seal(str(msisdn), found)))
            sealed += 1
    clean = store.rewrite_alert_texts(texts, setting=(SETTING, "1"))
    if texts:
        log.warning(
            "%s: %d one-time code(s) stored in clear by an older release: %d unsent sealed, "
            "%d sent redacted%s",
            store.path,
            len(texts),
            sealed,
            redacted,
            ""
            if clean
            else " (a reader kept the WAL from being emptied: old frames remain "
            "until the next checkpoint)",
        )
    return sealed, redacted
