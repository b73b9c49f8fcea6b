"""The one error catalogue: every code users and clients can see is declared here, once.

Codes follow the platform's style ``ERR_<AREA>_<NNN>`` (Seller Center shows ``ERR_LOG_204`` for an
invalid tracking number). Each has its HTTP status, a message and a fix-it hint, both translated.
API, portal and admin render from this module; clients branch on the code, never on the text.
It lives in ``stores`` (the tenancy kernel) because every app depends on ``stores`` and not the
other way round, so any app can declare and raise codes without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from django.utils.translation import override


@dataclass(frozen=True)
class ErrorCode:
    code: str
    status: int
    message: Promise | str
    hint: Promise | str

    def localised(self, language: str) -> dict[str, str]:
        with override(language):
            return {"message": str(self.message), "hint": str(self.hint)}


CATALOGUE: dict[str, ErrorCode] = {}


def define(code: str, status: int, message: Promise | str, hint: Promise | str) -> ErrorCode:
    if code in CATALOGUE:
        raise ValueError(f"error code {code} is declared twice")
    entry = ErrorCode(code, status, message, hint)
    CATALOGUE[code] = entry
    return entry


class AppError(Exception):
    """A failure with a catalogue code. Services raise it; adapters render it."""

    def __init__(self, error: ErrorCode, *, fields: dict[str, list[str]] | None = None,
                 detail: str | None = None, data: dict[str, Any] | None = None):
        self.error = error
        self.fields = fields or {}
        self.detail = detail
        self.data = data or {}
        super().__init__(f"{error.code}: {detail or error.message}")

    @property
    def code(self) -> str:
        return self.error.code

    @property
    def status(self) -> int:
        return self.error.status


@dataclass
class Problem:
    """The rendered envelope body, independent of the transport."""

    code: str
    message: str
    hint: str
    fields: dict[str, list[str]] = field(default_factory=dict)
    request_id: str | None = None

    def as_envelope(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message, "hint": self.hint,
                                "request_id": self.request_id}
        if self.fields:
            body["fields"] = self.fields
        return {"error": body}


# --- generic ------------------------------------------------------------------------------
ERR_VALIDATION = define(
    "ERR_VALIDATION", 400, _("Some fields are invalid."),
    _("Correct the fields listed under “fields” and send the request again."),
)
ERR_PARSE = define(
    "ERR_VALIDATION_PARSE", 400, _("The request body could not be read."),
    _("Send a well-formed JSON body with Content-Type: application/json."),
)
ERR_NOT_FOUND = define(
    "ERR_NOT_FOUND", 404, _("Not found."),
    _("Check the id. Objects of stores your role does not cover are not shown."),
)
ERR_METHOD = define(
    "ERR_METHOD_NOT_ALLOWED", 405, _("This method is not allowed here."),
    _("See the API documentation at /api/docs/ for the methods each path accepts."),
)
ERR_NOT_ACCEPTABLE = define(
    "ERR_NOT_ACCEPTABLE", 406, _("The requested response format is not available."),
    _("Ask for application/json."),
)
ERR_TOO_LARGE = define(
    "ERR_TOO_LARGE", 413, _("The request is too large."),
    _("Split the work into smaller requests, or use a background job."),
)
ERR_MEDIA_TYPE = define(
    "ERR_UNSUPPORTED_MEDIA_TYPE", 415, _("This content type is not supported here."),
    _("Send application/json (or multipart/form-data for uploads)."),
)
ERR_THROTTLED = define(
    "ERR_THROTTLED", 429, _("Too many requests."),
    _("Wait for the number of seconds in the Retry-After header, then try again."),
)
ERR_INTERNAL = define(
    "ERR_INTERNAL", 500, _("Something went wrong on our side."),
    _("Try again later. If it persists, give support the request id."),
)

# --- authentication -----------------------------------------------------------------------
ERR_AUTH_001 = define(
    "ERR_AUTH_001", 401, _("Authentication is required."),
    _("Send “Authorization: Token <key>”, or sign in to the portal."),
)
ERR_AUTH_002 = define(
    "ERR_AUTH_002", 401, _("The API token is invalid or has been revoked."),
    _("Create a new token with “manage.py create_api_token <username>” or in the portal."),
)
ERR_AUTH_003 = define(
    "ERR_AUTH_003", 429, _("Too many failed sign-in attempts; this account is locked for a while."),
    _("Wait for the cool-off period to end, or ask the agency owner or support to unlock it."),
)
ERR_AUTH_004 = define(
    "ERR_AUTH_004", 403, _("This account does not belong to any agency."),
    _("Ask your agency owner to invite you (Team management → Members)."),
)

ERR_AUTH_005 = define(
    "ERR_AUTH_005", 403, _("The CSRF token is missing or wrong."),
    _("Reload the page and try again; scripts should use token authentication instead of the session."),
)

# --- permissions: one per StorePerm, each hint names the role setting that grants it --------
ERR_PERM_000 = define(
    "ERR_PERM_000", 403, _("You are not allowed to do this."),
    _("Ask the agency owner which role grants it (Team management → Role settings)."),
)
ERR_PERM_001 = define(
    "ERR_PERM_001", 403, _("Your role does not allow after-sales handling on this store."),
    _("Ask the owner to tick “After-sales handling” for your role: "
      "Team management → Role settings → After-sales handling (团队管理 → 角色设置 → 勾选「售后处理」)."),
)
ERR_PERM_002 = define(
    "ERR_PERM_002", 403, _("Your role does not allow refunds on this store."),
    _("Ask the owner to tick “Refund” for your role: Team management → Role settings → Refund."),
)
ERR_PERM_003 = define(
    "ERR_PERM_003", 403, _("Your role does not allow managing logistics on this store."),
    _("Ask the owner to tick “Manage logistics” for your role: "
      "Team management → Role settings → Manage logistics."),
)
ERR_PERM_004 = define(
    "ERR_PERM_004", 403, _("Your role does not allow managing quick replies on this store."),
    _("Ask the owner to tick “Manage quick replies” for your role: "
      "Team management → Role settings → Manage quick replies."),
)
ERR_PERM_005 = define(
    "ERR_PERM_005", 403, _("Your role does not allow viewing analytics on this store."),
    _("Ask the owner to tick “View analytics” for your role: "
      "Team management → Role settings → View analytics."),
)
ERR_PERM_006 = define(
    "ERR_PERM_006", 403, _("Only the agency owner or a role with team management may manage the team."),
    _("Ask the owner to tick “Manage team” for your role: Team management → Role settings → Manage team."),
)
ERR_PERM_007 = define(
    "ERR_PERM_007", 400, _("A role cannot be assigned to the agency owner or to a store of another agency."),
    _("Owners already hold every permission; pick a sub-account and stores of your own agency."),
)


def problem_for(error: ErrorCode, *, detail: str | None = None, fields=None,
                request_id: str | None = None) -> Problem:
    return Problem(code=error.code, message=detail or str(error.message), hint=str(error.hint),
                   fields=fields or {}, request_id=request_id)


def catalogue_markdown() -> str:
    """docs/ERRORS.md, generated so the docs can never drift from the code (a test compares)."""
    lines = [
        "# Error codes",
        "",
        "Generated by `./dev manage error_codes_markdown > docs/ERRORS.md`; also served at "
        "`GET /api/v1/error-codes/`. Clients branch on the code, never on the text.",
        "",
        "| code | HTTP | message (en) | message (zh-hans) | hint (en) | hint (zh-hans) |",
        "|---|---|---|---|---|---|",
    ]
    for entry in sorted(CATALOGUE.values(), key=lambda e: e.code):
        en, zh = entry.localised("en"), entry.localised("zh-hans")
        cells = [f"`{entry.code}`", str(entry.status), en["message"], zh["message"], en["hint"], zh["hint"]]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


# --- after-sales: state machine and review --------------------------------------------------
ERR_STATE_001 = define(
    "ERR_STATE_001", 409, _("This action is not possible in the request's current state."),
    _("Reload the request: someone (or the platform) may have acted on it already. "
      "The actions offered are listed in allowed_actions."),
)
ERR_STATE_002 = define(
    "ERR_STATE_002", 409, _("This decision does not apply to this type of request."),
    _("Pick a decision that matches the request type (refund only, return and refund, exchange)."),
)
ERR_REVIEW_001 = define(
    "ERR_REVIEW_001", 400, _("This reject reason is not offered for this request."),
    _("Choose one of the reject reasons listed for this request (they differ per request)."),
)
ERR_REVIEW_002 = define(
    "ERR_REVIEW_002", 422, _("Review failed: the buyer's evidence is unclear or does not match the description "
                             "(审核失败)."),
    _("Re-review by hand: request clearer evidence from the buyer, or compare the photos with the listing."),
)
ERR_REFUND_001 = define(
    "ERR_REFUND_001", 400, _("The refund amount is above what is still refundable."),
    _("Refund at most the refundable amount shown on the request."),
)
ERR_REFUND_002 = define(
    "ERR_REFUND_002", 400, _("The amount must be a positive number in the request's currency."),
    _("Send a decimal string such as \"12.50\" with the request's currency."),
)
ERR_BULK_001 = define(
    "ERR_BULK_001", 413, _("Too many requests in one batch."),
    _("Split the batch, or run it as a background job."),
)
ERR_BULK_002 = define(
    "ERR_BULK_002", 400, _("This action cannot be used in batch review."),
    _("Batch review supports approve, reject, request evidence and close."),
)
ERR_SYNC_001 = define(
    "ERR_SYNC_001", 202, _("The platform sent a status this product does not know yet; it was kept as sent."),
    _("Nothing is lost: the raw status is stored and flagged. Tell support so the mapping can be added."),
)
ERR_SYNC_002 = define(
    "ERR_SYNC_002", 400, _("The platform payload is incomplete or malformed."),
    _("Check the fields listed; the event was not applied."),
)
ERR_SYNC_003 = define(
    "ERR_SYNC_003", 200, _("An older platform update arrived after a newer one; it was ignored."),
    _("Nothing to do: the request keeps the newer status. The ignored update is kept in the log."),
)

# --- logistics failure causes (DOMAIN: 物流断链, 物流单号无效) ------------------------------
ERR_LOG_204 = define(
    "ERR_LOG_204", 400, _("Invalid tracking number (物流单号无效)."),
    _("Check the number against the carrier's format and re-enter or re-scan it."),
)
ERR_LOG_301 = define(
    "ERR_LOG_301", 409, _("Broken logistics chain: the return parcel was not scanned by the carrier in time "
                          "(物流断链)."),
    _("Ask the buyer for the drop-off receipt, check the tracking number, or contact the carrier."),
)

# --- evidence uploads ----------------------------------------------------------------------
ERR_EVID_001 = define(
    "ERR_EVID_001", 413, _("The file is too large."),
    _("Upload images up to the size limit shown; compress large photos first."),
)
ERR_EVID_002 = define(
    "ERR_EVID_002", 400, _("Too many files for this request."),
    _("Remove some evidence first, or combine photos."),
)
ERR_EVID_003 = define(
    "ERR_EVID_003", 415, _("This file type is not accepted as evidence."),
    _("Upload JPEG, PNG or WebP images; link videos instead of uploading them."),
)
ERR_EVID_004 = define(
    "ERR_EVID_004", 400, _("The image is damaged or its dimensions are not allowed."),
    _("Re-export the photo as a normal JPEG or PNG and upload it again."),
)

# --- quick replies -------------------------------------------------------------------------
ERR_REPLY_001 = define(
    "ERR_REPLY_001", 400, _("The text contains words the platform's sensitive-word check refuses (敏感词)."),
    _("Remove the words listed (contact details, off-platform payment or review-for-reward wording)."),
)
ERR_REPLY_002 = define(
    "ERR_REPLY_002", 400, _("The reply uses a variable that does not exist."),
    _("Use only the variables listed: {buyer_name}, {order_id}, {return_id}, {refund_amount}, {refund_eta}, "
      "{store_name}."),
)


# --- logistics -----------------------------------------------------------------------------
ERR_LOG_205 = define(
    "ERR_LOG_205", 400, _("This carrier is unknown or does not serve the request's market."),
    _("Pick a carrier listed for the store's market (GET /api/v1/carriers/?market=…)."),
)
ERR_LOG_206 = define(
    "ERR_LOG_206", 422, _("The carrier does not know this tracking number."),
    _("Check the number with the buyer; it may be mistyped or belong to another carrier."),
)
ERR_LOG_207 = define(
    "ERR_LOG_207", 503, _("The carrier could not be reached to check the tracking number."),
    _("Nothing to do now: the check is retried automatically. If it keeps failing, check the carrier's status."),
)
ERR_LOG_208 = define(
    "ERR_LOG_208", 409, _("This request has no return parcel to track."),
    _("Only return-and-refund and exchange requests carry a return tracking number."),
)
ERR_LOG_401 = define(
    "ERR_LOG_401", 409, _("The parcel can no longer be intercepted (物流拦截)."),
    _("It has already been delivered or an interception is still open; follow up with a return instead."),
)
ERR_LOG_501 = define(
    "ERR_LOG_501", 400, _("The phone number is not valid for this market."),
    _("Enter the number with its country code, e.g. +62 812 3456 7890."),
)
ERR_LOG_502 = define(
    "ERR_LOG_502", 400, _("The drop-off point file has errors; nothing was imported."),
    _("Fix the rows listed (row number, column, problem) and import the file again."),
)
ERR_LOG_503 = define(
    "ERR_LOG_503", 400, _("The coordinates are not valid."),
    _("Send latitude between -90 and 90 and longitude between -180 and 180."),
)
ERR_LOG_601 = define(
    "ERR_LOG_601", 409, _("No prepaid return label is available for this request."),
    _("Labels are made for eligible US returns once the buyer's return is approved."),
)
ERR_LOG_602 = define(
    "ERR_LOG_602", 409, _("The store has no default return address for its market."),
    _("Add one in return address management (退货地址管理) and mark it as default; then issue the label again."),
)

# --- return policy --------------------------------------------------------------------------
ERR_POLICY_001 = define(
    "ERR_POLICY_001", 200, _("No-reason return does not apply: the item is in an exempt category (无理由退货豁免)."),
    _("Custom-made, intimate apparel and digital items are exempt (US Return Policy §4.2). Review the reason "
      "given by the buyer before approving."),
)

# --- SLA: deadlines, compensation, service score ------------------------------------------
ERR_SLA_001 = define(
    "ERR_SLA_001", 409, _("A deadline was missed (超时)."),
    _("Act on the request now; the breach, any automatic compensation (自动赔付) and the service-score "
      "deduction are recorded on it."),
)
ERR_SLA_002 = define(
    "ERR_SLA_002", 200, _("Automatic compensation was not granted: the store's monthly compensation budget is "
                          "used up."),
    _("Raise the store's monthly budget in the market policy, or compensate the buyer by hand."),
)
# Business-hours calendars (stores/calendars.py, BusinessCalendar, MarketPolicy.business_hours_kinds).
ERR_SLA_003 = define(
    "ERR_SLA_003", 400, _("The working hours of the business calendar are not valid."),
    _("Give each weekday (mon … sun) a list of [\"HH:MM\", \"HH:MM\"] ranges, each starting before it ends and "
      "not overlapping, e.g. {\"mon\": [[\"09:00\", \"12:00\"], [\"13:00\", \"18:00\"]]}; \"24:00\" may end a day."),
)
ERR_SLA_004 = define(
    "ERR_SLA_004", 400, _("The business calendar has no working time, so no deadline could ever be reached."),
    _("Give at least one weekday a working range, remove holidays that close every working day, or take the "
      "deadline kinds off the market policy's business-hours list."),
)
ERR_SLA_005 = define(
    "ERR_SLA_005", 400, _("A holiday of the business calendar is not valid."),
    _("List each holiday once, as \"YYYY-MM-DD\" or as {\"date\": \"YYYY-MM-DD\", \"name\": \"…\"}."),
)
ERR_SLA_006 = define(
    "ERR_SLA_006", 400, _("The time zone is not a known IANA time zone."),
    _("Use a name such as Europe/London or Asia/Bangkok; leave it empty to use the market's time zone."),
)
ERR_SLA_007 = define(
    "ERR_SLA_007", 400, _("This deadline cannot be counted in business hours."),
    _("Choose among first_response, auto_approve and replacement_response. The platform's own deadline is a "
      "timestamp the platform sends and always runs on the wall clock."),
)

# --- TikTok Shop Partner API (the platform's own code is kept alongside) -------------------------------
ERR_TTS_001 = define(
    "ERR_TTS_001", 502, _("TikTok Shop refused the store's access token."),
    _("Reconnect the store (authorise the app again) if refreshing the token keeps failing."),
)
ERR_TTS_002 = define(
    "ERR_TTS_002", 503, _("TikTok Shop is rate-limiting or temporarily failing; the call was retried."),
    _("Nothing to do: the sync tries again on its next run."),
)
ERR_TTS_003 = define(
    "ERR_TTS_003", 502, _("TikTok Shop refused the request."),
    _("The platform's code and message are in the log; check the store's authorisation and scopes."),
)
ERR_TTS_004 = define(
    "ERR_TTS_004", 502, _("TikTok Shop could not be reached or did not answer in its documented format."),
    _("Nothing to do if it is brief: the sync tries again on its next run."),
)
ERR_TTS_005 = define(
    "ERR_TTS_005", 500, _("Stored TikTok Shop credentials cannot be decrypted with the configured keys."),
    _("Put the key they were encrypted with back into CREDENTIALS_KEYS (newest first), then run "
      "rotate_credentials."),
)
ERR_TTS_006 = define(
    "ERR_TTS_006", 409, _("This store is not connected to TikTok Shop, or its authorisation has ended."),
    _("Connect the store: an owner authorises the partner app for the seller account."),
)
ERR_TTS_007 = define(
    "ERR_TTS_007", 400, _("The authorisation link is invalid, expired or was already used."),
    _("Start the connection again from the store list; links are valid for 10 minutes and once."),
)
ERR_TTS_008 = define(
    "ERR_TTS_008", 409, _("This TikTok shop is already connected to another agency."),
    _("A shop can be run by one agency at a time: the other agency must disconnect it first."),
)
ERR_TTS_009 = define(
    "ERR_TTS_009", 409, _("The platform does not allow this decision for the request right now."),
    _("The platform's reason is shown with the request; refresh it to see the decisions still available."),
)
ERR_TTS_010 = define(
    "ERR_TTS_010", 409, _("A sync of this store is already running."),
    _("Nothing to do: the running sync covers the same changes; the report shows when it ends."),
)
ERR_TTS_012 = define(
    "ERR_TTS_012", 409, _("There is no failed decision to send again for this request."),
    _("Only a decision TikTok Shop did not take can be sent again; a confirmed or sending one needs nothing."),
)
ERR_TTS_013 = define(
    "ERR_TTS_013", 400, _("The shop's region is not one of the markets served here."),
    _("The shop was left out; the other shops of the seller were connected."),
)
ERR_TTS_014 = define(
    "ERR_TTS_014", 400, _("The partner app points at a host that is not one of TikTok Shop's."),
    _("Use the platform's hosts; others (a local emulator) must be listed in TTS_ALLOWED_HOSTS."),
)
ERR_TTS_011 = define(
    "ERR_TTS_011", 502, _("TikTok Shop did not confirm the decision; it is kept and can be sent again."),
    _("See the platform's code on the request; send the decision again once the cause is fixed."),
)

# --- inbound webhooks -------------------------------------------------------------------------
ERR_HOOK_001 = define(
    "ERR_HOOK_001", 401, _("The webhook signature is missing or wrong."),
    _("Check the webhook secret configured for this agency and the sender's signing scheme."),
)
ERR_HOOK_002 = define(
    "ERR_HOOK_002", 400, _("The webhook body could not be read."),
    _("The sender must post the JSON body documented for its webhooks."),
)

# --- idempotency keys ------------------------------------------------------------------------
ERR_IDEMPOTENCY_KEY_INVALID = define(
    "ERR_IDEMPOTENCY_KEY_INVALID", 400, _("The Idempotency-Key header is not valid."),
    _("Send 1 to 255 visible ASCII characters (no spaces), e.g. a UUID; use a new key for each new operation."),
)
ERR_IDEMPOTENCY_MISMATCH = define(
    "ERR_IDEMPOTENCY_MISMATCH", 409,
    _("This Idempotency-Key was already used with a different request body or endpoint."),
    _("Retry with exactly the same body to get the first result, or use a new key for a new operation."),
)
ERR_IDEMPOTENCY_IN_PROGRESS = define(
    "ERR_IDEMPOTENCY_IN_PROGRESS", 409,
    _("A request with this Idempotency-Key is still being processed."),
    _("Wait for the number of seconds in the Retry-After header, then send the same request again to get "
      "its result."),
)


# --- exports, imports, background jobs -------------------------------------------------------
ERR_JOB_001 = define(
    "ERR_JOB_001", 409, _("This job has no result file (yet)."),
    _("Wait until the job's status is succeeded; only export jobs produce a file."),
)
ERR_JOB_002 = define(
    "ERR_JOB_002", 500, _("The background job stopped before it finished."),
    _("It ran out of time or was interrupted too often. Start it again with fewer rows, or give support the "
      "job id."),
)
ERR_JOB_003 = define(
    "ERR_JOB_003", 413, _("Too many requests for one background job."),
    _("Split the ids into several jobs within the limit shown."),
)
ERR_IMPORT_001 = define(
    "ERR_IMPORT_001", 400, _("The file could not be read as an Excel (.xlsx) or CSV file."),
    _("Upload the file as .xlsx (Excel workbook) or .csv; older .xls files must be saved as .xlsx first."),
)
ERR_IMPORT_002 = define(
    "ERR_IMPORT_002", 400, _("The header row is missing or has unexpected columns."),
    _("The first row must name the columns: return_id or order_id, reason_code, reason_text and optionally "
      "note."),
)
ERR_IMPORT_003 = define(
    "ERR_IMPORT_003", 413, _("The file is too large."),
    _("Split it into files within the size and row limits shown."),
)
ERR_IMPORT_004 = define(
    "ERR_IMPORT_004", 400, _("The file contains formulas; nothing was imported."),
    _("Replace the formulas listed by their values (Paste special → Values) and upload the file again."),
)
ERR_IMPORT_005 = define(
    "ERR_IMPORT_005", 400, _("The file's text encoding could not be recognised."),
    _("Save it as “CSV UTF-8” (Excel: Save as → CSV UTF-8), or upload the .xlsx file instead."),
)
ERR_IMPORT_101 = define(
    "ERR_IMPORT_101", 400, _("No after-sales request with this return id or order id in your stores."),
    _("Check the id; requests of stores your role does not cover are not shown."),
)
ERR_IMPORT_102 = define(
    "ERR_IMPORT_102", 400, _("The reason is missing."),
    _("Fill in reason_code or reason_text (or both)."),
)
ERR_IMPORT_103 = define(
    "ERR_IMPORT_103", 400, _("A value is too long."),
    _("reason_code may have at most 160 characters, reason_text and note at most 500."),
)
ERR_IMPORT_104 = define(
    "ERR_IMPORT_104", 400, _("The row has no usable return id or order id."),
    _("Fill in the id as text; Excel rounds long numbers, so format the id column as Text."),
)
ERR_IMPORT_105 = define(
    "ERR_IMPORT_105", 400, _("This id matches several after-sales requests."),
    _("Use the return id, which names one request."),
)
ERR_IMPORT_106 = define(
    "ERR_IMPORT_106", 400, _("This request is already on an earlier row of the file."),
    _("Keep one row per request; the earlier row is used."),
)
