"""Tracking numbers as people and barcode scanners type them: normalise, then check the carrier's format.

The rules are data on ``Carrier`` (format kind, pattern, prefixes, hint) plus the check-digit algorithms
here. Services call ``validate`` before anything is written, so a mistyped number is refused with
``ERR_LOG_204`` and a hint naming the expected format instead of silently stalling for 48 hours.

Decisions:
- ``package`` carriers use the ``tracking-numbers`` package. Its ``get_tracking_number`` returns the *first*
  valid definition only, and some numbers are valid for two couriers (every FedEx SmartPost number is also
  a valid USPS 91 number), so when the first match names another courier we also try the carrier's own
  definitions.
- A national post also issues UPU S10 items for international mail. USPS is the only postal operator among
  the package's couriers, so a USPS carrier accepts S10 numbers issued in the US (ending ``US``), with the
  S10 check digit. Listing ``s10`` in a carrier's ``package_couriers`` accepts any S10 item (data, no code).
- A carrier's ``pattern`` is also accepted for ``s10`` and ``package`` carriers (Canada Post's 16 digits).
- ``none`` carriers, and ``pattern`` carriers whose pattern is empty, accept 6–40 letters or digits as
  *unverified*: the carrier check (aggregator) is then the only proof.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass

from django.utils.translation import gettext as _
from tracking_numbers import DEFINITIONS, get_tracking_number

from logistics.models import Carrier, ReturnShipment
from stores import errors
from stores.errors import AppError

log = logging.getLogger(__name__)

MAX_LENGTH = ReturnShipment._meta.get_field("tracking_number").max_length
ANY_NUMBER = re.compile(r"[A-Z0-9]{6,40}")
S10_NUMBER = re.compile(r"([A-Z]{2})(\d{8})(\d)([A-Z]{2})")
S10_WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)
# Package courier code → the UPU country code of the S10 items that postal operator issues.
POSTAL_S10_ISSUERS = {"usps": "US"}

# A barcode scanner may prefix its AIM symbology identifier (e.g. "]C1" for Code 128 / GS1-128).
_AIM_ID = re.compile(r"^\][A-Za-z][0-9A-Za-z]")
_QUOTES = "\"'`“”‘’«»「」『』"


@dataclass(frozen=True)
class Verdict:
    format_check: str  # ReturnShipment.FormatCheck value
    hint: str  # what was checked, for people


def normalise(raw, carrier: Carrier | None = None) -> str:
    """The number as the carrier prints it: no spaces, upper case, no scanner or copy-paste noise.

    NFKC first, so full-width digits typed with a Chinese input method become ASCII.
    """
    text = unicodedata.normalize("NFKC", str(raw or ""))
    text = "".join(ch for ch in text if not ch.isspace() and unicodedata.category(ch) not in ("Cc", "Cf"))
    prefixes = sorted({p.upper() for p in (carrier.strip_prefixes if carrier else []) if p}, key=len, reverse=True)
    while True:
        before = text
        text = _AIM_ID.sub("", text).strip(_QUOTES)
        upper = text.upper()
        for prefix in prefixes:
            if upper.startswith(prefix):
                text = text[len(prefix):]
                break
        if text == before:
            return text.upper()


def s10_check_digit(serial: str) -> int:
    """UPU S10 check digit of the 8-digit serial number."""
    remainder = sum(int(d) * w for d, w in zip(serial, S10_WEIGHTS, strict=True)) % 11
    if remainder == 1:
        return 0
    if remainder == 0:
        return 5
    return 11 - remainder


def is_s10(number: str) -> bool:
    match = S10_NUMBER.fullmatch(number)
    return bool(match) and s10_check_digit(match[2]) == int(match[3])


def package_accepts(number: str, couriers) -> bool:
    """Valid for one of these ``tracking-numbers`` courier codes (check digit and service codes)."""
    couriers = {c.lower() for c in couriers}
    if not couriers:
        return False
    found = get_tracking_number(number)
    if found is not None and found.courier.code in couriers:
        return True
    for definition in DEFINITIONS:
        if definition.courier.code in couriers:
            candidate = definition.test(number)
            if candidate is not None and candidate.valid:
                return True
    return any(number.endswith(country) and is_s10(number)
               for courier, country in POSTAL_S10_ISSUERS.items() if courier in couriers)


def _matches_pattern(pattern: str, number: str) -> bool:
    if not pattern:
        return False
    try:
        return re.fullmatch(pattern, number) is not None
    except re.error:  # patterns are edited in admin; a broken one must not break registration
        log.warning("carrier pattern %r is not a valid regular expression", pattern)
        return False


def expected_format(carrier: Carrier) -> str:
    if carrier.format_hint:
        return carrier.format_hint
    if carrier.format_check == Carrier.FormatKind.S10:
        return _("UPU S10: 2 letters, 8 digits, a check digit, country code (e.g. RB123456785GB)")
    return _("6 to 40 letters or digits")


def invalid(carrier: Carrier) -> AppError:
    hint = _("Expected for %(carrier)s: %(format)s") % {"carrier": carrier.name, "format": expected_format(carrier)}
    return AppError(errors.ERR_LOG_204, fields={"tracking_number": [hint]})


def validate(number: str, carrier: Carrier) -> Verdict:
    """Check a normalised number against the carrier's format; raise ERR_LOG_204 naming the format."""
    if not number or len(number) > MAX_LENGTH:
        raise invalid(carrier)
    kind = carrier.format_check
    if kind == Carrier.FormatKind.NONE or (kind == Carrier.FormatKind.PATTERN and not carrier.pattern):
        if ANY_NUMBER.fullmatch(number):
            return Verdict(ReturnShipment.FormatCheck.UNVERIFIED,
                           _("This carrier has no known number format; the carrier check confirms the number."))
        raise invalid(carrier)
    if _matches_pattern(carrier.pattern, number):
        return Verdict(ReturnShipment.FormatCheck.VERIFIED, _("Matches the carrier's number format."))
    if kind == Carrier.FormatKind.S10 and is_s10(number):
        return Verdict(ReturnShipment.FormatCheck.VERIFIED, _("UPU S10 number with a correct check digit."))
    if kind == Carrier.FormatKind.PACKAGE and package_accepts(number, carrier.package_couriers):
        return Verdict(ReturnShipment.FormatCheck.VERIFIED, _("Number format and check digit verified."))
    raise invalid(carrier)
