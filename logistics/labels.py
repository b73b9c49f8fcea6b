"""预付运费退货标签: the prepaid return label of eligible US returns (US Return Policy §4.2).

A request is eligible when its market's policy offers prepaid labels, it is a return-and-refund, no
exempt category was found on intake (无理由退货豁免) and the return was approved (awaiting the buyer's
parcel). Everything that decides it is data: the policy row, the request's type, state and exemption.

One label per request (OneToOne). Issuing locks the request, so a second call — or a retried task —
returns the label already made. The PDF is 4×6 inches: ship-from is the buyer as the request knows them
(buyers' addresses are not stored here, and the label says so), ship-to the store's default return
address, and a Code128 barcode of the tracking number.

Tracking numbers are generated locally in the USPS IMpb layout until a label broker supplies real
ones: channel ``93`` (6-digit mailer id), a 3-digit service type code, the mailer id, a 10-digit
serial (the request's database id, so it is unique and the same on a retry) and the USPS mod-10 check
digit. Mailer id and service type come from settings (RETURN_LABEL_USPS_MAILER_ID,
RETURN_LABEL_USPS_SERVICE_TYPE); the defaults are placeholders.
"""

from __future__ import annotations

import io
import unicodedata
import uuid

import phonenumbers
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from reportlab.graphics.barcode.code128 import Code128
from reportlab.lib.units import inch
from reportlab.lib.utils import simpleSplit
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen import canvas

from aftersales import oplog
from aftersales.models import AfterSalesRequest
from aftersales.services import lock_ticket, log_logistics
from aftersales.states import RequestType, State
from logistics.addresses import default_return_address
from logistics.models import Carrier, ReturnAddress, ReturnLabel
from stores import errors
from stores.errors import AppError
from stores.markets import MARKET_NAMES
from stores.models import MarketPolicy
from stores.scoping import Actor

ACTION = "return_label"
DEFAULT_CARRIER = "usps"
DEFAULT_USPS_MAILER_ID = "000000"
DEFAULT_USPS_SERVICE_TYPE = "020"
USPS_CHANNEL = "93"  # IMpb channel application identifier for a 6-digit mailer id
PAGE = (4 * inch, 6 * inch)
MARGIN = 0.18 * inch
BAR_WIDTH = 0.0165 * inch  # USPS asks for an X dimension of 13–21 mils
BAR_HEIGHT = 0.75 * inch

# Refusal reasons: key → message (the key travels in the error's data for clients and the task).
REASONS = {
    "market": lambda t: _("The request's market does not offer prepaid return labels."),
    "type": lambda t: _("Only return-and-refund requests get a prepaid return label."),
    "exempt": lambda t: _("The item is exempt from no-reason returns (%(category)s), so no prepaid label is "
                          "issued.") % {"category": t.exempt_category},
    "state": lambda t: _("A label is issued once the return is approved and awaits the buyer's parcel."),
    "no_return_address": lambda t: _("The store has no default return address for its market; add one in "
                                     "return address management (退货地址管理)."),
}


# --- eligibility ---------------------------------------------------------------------------------------
def ineligibility(ticket: AfterSalesRequest) -> str | None:
    """Why the request cannot get a new label (a REASONS key), or None when it can."""
    policy = MarketPolicy.objects.filter(market_id=ticket.store.market_id).only("prepaid_return_label").first()
    if policy is None or not policy.prepaid_return_label:
        return "market"
    if ticket.type != RequestType.RETURN_AND_REFUND:
        return "type"
    if ticket.exempt_category:
        return "exempt"
    if ticket.state != State.AWAITING_RETURN:
        return "state"
    return None


def _refusal(ticket: AfterSalesRequest, reason: str) -> AppError:
    # Not eligible → ERR_LOG_601; eligible but no return address to print → ERR_LOG_602 (someone must act).
    code = errors.ERR_LOG_602 if reason == "no_return_address" else errors.ERR_LOG_601
    return AppError(code, detail=REASONS[reason](ticket), data={"reason": reason})


# --- tracking number -----------------------------------------------------------------------------------
def usps_check_digit(digits: str) -> int:
    """USPS mod 10: weights 3 and 1 alternating from the rightmost digit."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return (10 - total % 10) % 10


def usps_tracking_number(serial: int) -> str:
    """A 22-digit IMpb-style number: channel, service type, mailer id, 10-digit serial, check digit."""
    mailer = str(getattr(settings, "RETURN_LABEL_USPS_MAILER_ID", DEFAULT_USPS_MAILER_ID))
    service = str(getattr(settings, "RETURN_LABEL_USPS_SERVICE_TYPE", DEFAULT_USPS_SERVICE_TYPE))
    if not (mailer.isdigit() and len(mailer) == 6 and service.isdigit() and len(service) == 3):
        raise ValueError("RETURN_LABEL_USPS_MAILER_ID needs 6 digits and RETURN_LABEL_USPS_SERVICE_TYPE 3")
    body = f"{USPS_CHANNEL}{service}{mailer}{serial % 10**10:010d}"
    return body + str(usps_check_digit(body))


NUMBER_MAKERS = {"usps": usps_tracking_number}


def _carrier(market_code: str) -> Carrier:
    """RETURN_LABEL_CARRIER: a carrier code, or a dict market → code; it must serve the market."""
    setting = getattr(settings, "RETURN_LABEL_CARRIER", DEFAULT_CARRIER)
    code = setting.get(market_code, DEFAULT_CARRIER) if isinstance(setting, dict) else setting
    carrier = Carrier.objects.filter(code=code, is_active=True).first()
    if carrier is None or code not in NUMBER_MAKERS or (carrier.markets and market_code not in carrier.markets):
        raise AppError(errors.ERR_LOG_205, detail=_("The return-label carrier “%(code)s” is not set up for "
                                                    "%(market)s.") % {"code": code, "market": market_code},
                       data={"carrier": code})
    return carrier


# --- the PDF -------------------------------------------------------------------------------------------
def _grouped(number: str) -> str:
    return " ".join(number[i:i + 4] for i in range(0, len(number), 4))


# Letters that do not decompose into a base letter and a mark.
_FOLD = str.maketrans({"đ": "d", "Đ": "D", "ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "ß": "ss", "æ": "ae", "Æ": "AE"})


def printable(text: str) -> str:
    """Carrier labels are read in Latin letters, and the PDF's built-in fonts only have those (WinAnsi):
    accents are folded (Nguyễn → Nguyen); other scripts become "?" rather than black boxes."""
    decomposed = unicodedata.normalize("NFKD", str(text or "").translate(_FOLD))
    kept = "".join(c for c in decomposed if not unicodedata.combining(c))
    return kept.encode("cp1252", "replace").decode("cp1252").strip()


def _readable(text: str) -> bool:
    return any(c.isalnum() for c in text)


def _wrap(text: str, font: str, size: float, width: float, max_lines: int) -> list[str]:
    """At most ``max_lines`` lines of ``width``; a longer text ends in an ellipsis."""
    parts = simpleSplit(text, font, size, width) or [""]
    if len(parts) <= max_lines:
        return parts
    last = parts[max_lines - 1]
    while last and stringWidth(last + "…", font, size) > width:
        last = last[:-1]
    return [*parts[:max_lines - 1], last.rstrip() + "…"]


def _address_lines(address: ReturnAddress) -> list[str]:
    place = " ".join(part for part in (address.city, address.region, address.postcode) if part)
    lines = [address.contact_name, address.warehouse, address.line1, address.line2, place,
             str(MARKET_NAMES.get(address.market.code, address.market.name)).upper(), _phone(address.phone)]
    return [printable(line) for line in lines if line]


def _phone(e164: str) -> str:
    """Stored as E.164; printed grouped (+1 650-253-0000) so a driver can read it."""
    try:
        return phonenumbers.format_number(phonenumbers.parse(e164), phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    except phonenumbers.NumberParseException:
        return e164


def render_label_pdf(*, carrier: Carrier, tracking_number: str, ticket: AfterSalesRequest,
                     address: ReturnAddress) -> bytes:
    """The 4×6 inch label. Carriers read English, so it is rendered in RETURN_LABEL_LANGUAGE (en).

    Top to bottom: carrier and "postage prepaid", ship-from, ship-to, references, barcode. The ship-to
    block takes the room left between the fixed parts, in the largest type that fits (long fields are
    cut at two lines each), so nothing ever runs into the barcode.
    """
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=PAGE, pageCompression=1)
    width, height = PAGE
    inner = width - 2 * MARGIN
    regular, bold = "Helvetica", "Helvetica-Bold"
    with translation.override(getattr(settings, "RETURN_LABEL_LANGUAGE", "en")):
        pdf.setTitle(_("Prepaid return label %(number)s") % {"number": tracking_number})
        y = height - MARGIN - 20
        pdf.setFont(bold, 22)
        pdf.drawString(MARGIN, y, printable(carrier.name))
        pdf.setFont(bold, 11)
        pdf.drawRightString(width - MARGIN, y + 6, _("POSTAGE PREPAID"))
        pdf.setFont(regular, 7)
        pdf.drawRightString(width - MARGIN, y - 4, _("Return service · no postage needed"))
        y -= 12
        pdf.line(MARGIN, y, width - MARGIN, y)

        def block(title: str, lines: list[list[str]], size: float) -> None:
            nonlocal y
            y -= 12
            pdf.setFont(bold, 7)
            pdf.drawString(MARGIN, y, title)
            pdf.setFont(regular, size)
            for wrapped in lines:
                for part in wrapped:
                    y -= size + 2
                    pdf.drawString(MARGIN, y, part)

        buyer = printable(ticket.buyer_name)
        sender = [buyer if _readable(buyer) else _("TikTok Shop buyer"),
                  _("Sender address: as registered with TikTok Shop (not stored by the seller).")]
        block(_("FROM (BUYER)"), [_wrap(line, regular, 8, inner, 1) for line in sender], 8)
        y -= 4
        pdf.line(MARGIN, y, width - MARGIN, y)

        # Fixed parts below the ship-to block: references (title + 2 lines) and the barcode with captions.
        bottom = MARGIN + 34
        barcode_top = bottom + BAR_HEIGHT + 8 + 8
        reserved = barcode_top + 6 + 12 + 2 * 10 + 6
        lines = _address_lines(address)
        for size in (12, 11, 10, 9, 8, 7):
            ship_to = [_wrap(line, regular, size, inner, 2) for line in lines]
            if y - 12 - sum(len(w) for w in ship_to) * (size + 2) >= reserved:
                break
        block(_("SHIP TO"), ship_to, size)
        y -= 6
        pdf.line(MARGIN, y, width - MARGIN, y)
        block(_("REFERENCE"), [_wrap(printable(text), regular, 8, inner, 1) for text in (
            _("Return ID: %(id)s") % {"id": ticket.return_id}, _("Order ID: %(id)s") % {"id": ticket.order_id})], 8)

        barcode = Code128(tracking_number, barWidth=BAR_WIDTH, barHeight=BAR_HEIGHT, humanReadable=False)
        pdf.setFont(bold, 8)
        pdf.drawCentredString(width / 2, bottom + BAR_HEIGHT + 8,
                              _("%(carrier)s TRACKING #") % {"carrier": printable(carrier.name).upper()})
        barcode.drawOn(pdf, (width - barcode.width) / 2, bottom)
        pdf.setFont(bold, 11)
        pdf.drawCentredString(width / 2, bottom - 14, _grouped(tracking_number))
        pdf.setFont(regular, 6)
        pdf.drawCentredString(width / 2, MARGIN, _("Issued %(when)s UTC · TikTok Shop return %(id)s")
                              % {"when": timezone.now().strftime("%Y-%m-%d %H:%M"),
                                 "id": printable(ticket.return_id)})
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


# --- service -------------------------------------------------------------------------------------------
def _existing(ticket: AfterSalesRequest) -> ReturnLabel | None:
    return ReturnLabel.objects.for_agency(ticket.agency_id).filter(ticket=ticket).select_related("carrier").first()


def issue_return_label(ticket_id, *, automatic: bool = False) -> ReturnLabel:
    """Make the request's label once (system code); ERR_LOG_601 with a reason when it is not eligible.

    ``automatic`` is the hook's path: it runs for every approved return of every market, so a refusal
    only because the market has no prepaid labels is not written to the request's log (it would mark
    every such request with an error that asks nobody to act). Every other refusal is logged.
    """
    payload: dict = {}
    locked_pk: int | None = None
    written: list[ReturnLabel] = []
    try:
        with transaction.atomic():
            ticket = lock_ticket(oplog.SYSTEM, ticket_id)
            locked_pk = ticket.pk
            existing = _existing(ticket)
            if existing is not None:
                return existing
            reason = ineligibility(ticket)
            if reason:
                raise _refusal(ticket, reason)
            address = default_return_address(ticket.store)
            if address is None:
                raise _refusal(ticket, "no_return_address")
            carrier = _carrier(ticket.store.market.code)
            number = NUMBER_MAKERS[carrier.code](ticket.pk)
            payload = {"tracking_number": number, "carrier": carrier.code}
            data = render_label_pdf(carrier=carrier, tracking_number=number, ticket=ticket, address=address)
            label = ReturnLabel(agency_id=ticket.agency_id, ticket=ticket, carrier=carrier, tracking_number=number)
            try:
                label.file.save(f"{uuid.uuid4().hex}.pdf", ContentFile(data), save=False)
                written.append(label)
                with transaction.atomic():
                    label.save(force_insert=True)
                payload.update({"label_id": str(label.public_id), "return_address_id": str(address.public_id)})
                log_logistics(ticket.pk, performer=oplog.SYSTEM, action=ACTION, payload=payload)
            except BaseException:
                _discard(written)
                raise
            return label
    except IntegrityError:
        # Only a writer that skipped the request lock can race us to the one-to-one row: theirs stands.
        found = ReturnLabel.objects.unscoped().filter(ticket_id=locked_pk).select_related("carrier").first()
        if found is None:
            raise
        return found
    except AppError as exc:
        quiet = automatic and exc.data.get("reason") == "market"
        if locked_pk is not None and not quiet:
            log_logistics(locked_pk, performer=oplog.SYSTEM, action=ACTION, payload={**payload, **exc.data},
                          error=exc)
        raise


def _discard(labels: list[ReturnLabel]) -> None:
    """Files are not transactional: remove what was written when the row is rolled back."""
    for label in labels:
        if label.file and label.file.name:
            label.file.storage.delete(label.file.name)


# --- selector ------------------------------------------------------------------------------------------
def label_for_actor(actor: Actor, ticket_id) -> ReturnLabel:
    """The label of a request the person may see (for the download); ERR_LOG_601 when it has none yet."""
    tickets = AfterSalesRequest.objects.for_actor(actor)
    if isinstance(ticket_id, int):
        tickets = tickets.filter(pk=ticket_id)
    else:
        try:
            tickets = tickets.filter(public_id=uuid.UUID(str(ticket_id)))
        except ValueError:
            tickets = tickets.none()
    ticket_pk = tickets.values_list("pk", flat=True).first()
    if ticket_pk is None:
        raise AppError(errors.ERR_NOT_FOUND)
    label = ReturnLabel.objects.for_actor(actor).filter(ticket_id=ticket_pk).select_related("carrier", "ticket").first()
    if label is None:
        raise AppError(errors.ERR_LOG_601)
    return label
