"""Card-present checks on track 2: the card verification value and the service code rules.

A card-present request that carries track 2 (field 35, or the chip's track 2 equivalent) is
checked like every issuer checks it, before the PIN so that a counterfeit costs the genuine
cardholder no PIN try:

* the track's PAN, expiry and service code must be the card's record (a different service
  code is what a re-encoded or cloned stripe looks like: counterfeit suspicion);
* a chip card (service code 2xx or 6xx) whose track 2 was read from the magnetic stripe is a
  *fallback*; the product decides whether it is accepted (``allow_chip_fallback``, default
  false). ISO 8583:1987 carries no terminal capability, and every terminal of the network is
  EMV-capable, so any read of a chip card that is not a chip read counts as a fallback;
* the card verification value in the discretionary data is verified by the HSM (payShield
  CY, constant time, under the card's CVK): on a chip read (field 22 entry mode 05 or 07,
  field 55 present) it is the **iCVV**, computed with service code 999, so a stripe copied
  from the chip's data is useless; on a stripe read it is the **CVV** with the card's real
  service code.

Track 2 layout of our cards (ISO/IEC 7813, discretionary data in the payShield / Visa
convention)::

    PAN = YYMM SSS K PPPP CCC [padding]
          |    |   | |    +-- CVV (stripe) or iCVV (chip's track 2 equivalent), 3 digits
          |    |   | +------- PVV, 4 digits
          |    |   +--------- PVKI, 1 digit
          |    +------------- service code
          +------------------ expiry

so the CVV is at positions 12-14 after the separator (expiry 4 + service code 3 + PVKI 1 +
PVV 4). Requests without track 2 (keyed PAN, e-commerce, EMV with field 55 and no field 35)
are not touched here. Nothing in this module logs or returns the track or the CVV.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from switch.config import Product
from switch.core.context import Decline
from switch.core.domain import Card
from switch.core.model import AuthRequest, ResponseCode
from switch.digits import is_ascii_digits
from switch.hsm.client import HsmClient

RC = ResponseCode

#: Field 22 PAN entry modes (first two digits) of a chip read: 05 contact, 07 contactless.
CHIP_ENTRY_MODES: Final = frozenset({"05", "07"})
#: Service code first digits of a card with a chip (2: international, 6: national).
CHIP_SERVICE_CODE_DIGITS: Final = frozenset({"2", "6"})
#: The service code the iCVV is computed with (Visa / payShield convention).
ICVV_SERVICE_CODE: Final = "999"
#: Where the CVV sits in the discretionary part (after the separator): see the module doc.
CVV_OFFSET: Final = 4 + 3 + 1 + 4
CVV_LENGTH: Final = 3


@dataclass(frozen=True, slots=True)
class Track2:
    """The parts of a track 2 the checks need. Holds the CVV: never log or store it."""

    pan: str
    expiry: str  # YYMM
    service_code: str
    cvv: str

    def __repr__(self) -> str:  # a stray log line must not print the track or its CVV
        return "Track2(<redacted>)"


def parse_track2(value: str) -> Track2:
    """Split track 2 (``=`` or ``D`` separator); a malformed track is a format error (30)."""
    sep = "=" if "=" in value else "D" if "D" in value else None
    if sep is None:
        raise Decline(RC.FORMAT_ERROR, "track 2: no separator")
    pan, rest = value.split(sep, 1)
    rest = rest.rstrip("F?")  # BCD padding / end sentinel a reader may leave
    end = CVV_OFFSET + CVV_LENGTH
    if not is_ascii_digits(pan) or len(rest) < end or not is_ascii_digits(rest[:end]):
        raise Decline(RC.FORMAT_ERROR, "track 2: too short or not digits for a card of ours")
    return Track2(pan, rest[:4], rest[4:7], rest[CVV_OFFSET:end])


def is_chip_read(req: AuthRequest) -> bool:
    """Whether field 22 says the card data came from the chip (entry mode 05 / 07)."""
    return req.entry_mode is not None and req.entry_mode[:2] in CHIP_ENTRY_MODES


def is_chip_card(service_code: str) -> bool:
    return service_code[:1] in CHIP_SERVICE_CODE_DIGITS


def check_track2_rules(req: AuthRequest, card: Card, product: Product) -> None:
    """The synchronous rules (track matches the card; no chip fallback unless the product
    allows it). Runs with the card checks, before any HSM call."""
    if req.track2 is None:
        return
    track = parse_track2(req.track2)
    if track.pan != req.pan:
        raise Decline(RC.FORMAT_ERROR, "track 2: PAN differs from the request's PAN")
    if req.service_code is not None and req.service_code != track.service_code:
        raise Decline(RC.FORMAT_ERROR, "service_code: differs from track 2")
    if track.service_code != card.service_code:
        raise Decline(
            RC.DO_NOT_HONOUR,
            "service code does not match the card's record (suspected counterfeit)",
        )
    if track.expiry != card.expiry:
        raise Decline(RC.EXPIRED_CARD, "track 2: expiry does not match the card")
    if is_chip_read(req):
        if not req.emv_data:
            raise Decline(RC.FORMAT_ERROR, "emv_data: required with a chip read (field 22)")
    elif is_chip_card(card.service_code) and not product.allow_chip_fallback:
        raise Decline(
            RC.NOT_PERMITTED_TO_CARDHOLDER,
            "chip card read by magnetic stripe: fallback not allowed for this card",
        )


async def verify_track2_cvv(hsm: HsmClient, req: AuthRequest, card: Card) -> None:
    """CVV (stripe read) or iCVV (chip read) through the HSM; a mismatch is a 05.

    Runs after :func:`check_track2_rules`, so the track's expiry and service code are the
    card's own."""
    if req.track2 is None:
        return
    track = parse_track2(req.track2)
    chip = is_chip_read(req)
    service_code = ICVV_SERVICE_CODE if chip else card.service_code
    if not await hsm.verify_cvv(card.cvk, req.pan, card.expiry, service_code, track.cvv):
        what = "iCVV (chip track 2 equivalent)" if chip else "CVV (magnetic stripe)"
        raise Decline(RC.DO_NOT_HONOUR, f"card verification value mismatch: {what}")
