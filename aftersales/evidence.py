"""上传凭证: evidence images and video links on an after-sales request.

Uploads are untrusted: the type comes from the bytes (Pillow), never from the file name or the client's
content type; size, count and pixel limits are checked before anything is stored; the stored name is
generated with the detected extension. Every upload or refusal is one operation-log row on the request,
so the evidence trail (举证) shows who added what and what was refused.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.files.base import ContentFile
from django.core.validators import URLValidator
from django.db import transaction
from django.db.models import QuerySet
from django.utils.translation import gettext as _
from PIL import Image, UnidentifiedImageError

from aftersales import oplog
from aftersales.models import AfterSalesRequest, Evidence
from aftersales.oplog import Performer
from aftersales.services import lock_ticket
from stores import errors
from stores.errors import AppError
from stores.permissions import StorePerm
from stores.scoping import Actor
from stores.services import require_store_perm

ACTION = "upload_evidence"

# Detected Pillow format → (stored extension, content type). Nothing else is accepted.
FORMATS: dict[str, tuple[str, str]] = {
    "JPEG": ("jpg", "image/jpeg"),
    "PNG": ("png", "image/png"),
    "WEBP": ("webp", "image/webp"),
}

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_FILES = 20
DEFAULT_MAX_PIXELS = 40_000_000  # above any phone photo; a 40 MP RGBA decode is ~160 MB, the most we allow
DEFAULT_MAX_SIDE = 20_000
MAX_NOTE = 500
MAX_NAME = 200


def max_bytes() -> int:
    return int(getattr(settings, "EVIDENCE_MAX_BYTES", DEFAULT_MAX_BYTES))


def max_files() -> int:
    return int(getattr(settings, "EVIDENCE_MAX_FILES", DEFAULT_MAX_FILES))


def max_pixels() -> int:
    return int(getattr(settings, "EVIDENCE_MAX_PIXELS", DEFAULT_MAX_PIXELS))


def max_side() -> int:
    return int(getattr(settings, "EVIDENCE_MAX_SIDE", DEFAULT_MAX_SIDE))


@dataclass(frozen=True)
class InspectedImage:
    """What the bytes turned out to be; only this (not the client's claims) is stored."""

    data: bytes
    sha256: str
    size: int
    width: int
    height: int
    extension: str
    content_type: str


# --- reading and inspecting -----------------------------------------------------------------------
def read_capped(file, limit: int) -> bytes:
    """Read at most ``limit`` bytes, refusing more without loading the rest into memory."""
    if file is None or not (hasattr(file, "chunks") or hasattr(file, "read")):
        raise AppError(errors.ERR_VALIDATION, fields={"file": [_("A file is required.")]})
    declared = getattr(file, "size", None)
    if isinstance(declared, int) and declared > limit:
        raise _too_large(limit)
    if hasattr(file, "chunks"):
        chunks: Iterable[bytes] = file.chunks()  # Django files rewind themselves
    else:
        if hasattr(file, "seek"):
            file.seek(0)
        chunks = iter(lambda: file.read(64 * 1024), b"")
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        if len(buf) > limit:
            raise _too_large(limit)
    return bytes(buf)


def _too_large(limit: int) -> AppError:
    mib = f"{limit / (1024 * 1024):.1f}"
    return AppError(errors.ERR_EVID_001, fields={"file": [_("At most %(mib)s MiB per file.") % {"mib": mib}]},
                    data={"max_bytes": limit})


def _damaged(reason: str) -> AppError:
    return AppError(errors.ERR_EVID_004, fields={"file": [reason]})


def inspect_image(data: bytes) -> InspectedImage:
    """Detect the type from the content and prove the image decodes within the pixel limit.

    Order matters: the header (format, dimensions) is read first so a decompression bomb is refused
    before any pixel is decoded; ``verify`` checks the structure (PNG chunk CRCs); a second open
    decodes the pixels, which is the only way to catch a truncated JPEG or WebP.
    """
    if not data:
        raise _damaged(_("The file is empty."))
    # Never above Pillow's own bomb threshold, whatever the setting says: a read-only global, thread-safe.
    limit, side = min(max_pixels(), Image.MAX_IMAGE_PIXELS or max_pixels()), max_side()
    formats = list(FORMATS)
    try:
        # Our own pixel limit is checked from the header before any pixel is decoded; Pillow's
        # DecompressionBombError stays as a second line (no process-wide warning filters: not thread-safe).
        with Image.open(io.BytesIO(data), formats=formats) as probe:
            fmt, (width, height) = probe.format, probe.size
            _check_dimensions(width, height, limit, side)
            probe.verify()
        with Image.open(io.BytesIO(data), formats=formats) as image:
            if image.format == "JPEG":
                # Decode at 1/8 scale: the whole entropy-coded stream is still read (so truncation
                # shows), at a fraction of the memory.
                image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
            image.load()
    except UnidentifiedImageError:
        raise AppError(errors.ERR_EVID_003, fields={"file": [_("Only JPEG, PNG and WebP images are accepted.")]},
                       data={"accepted": [ct for _ext, ct in FORMATS.values()]}) from None
    except Image.DecompressionBombError:
        raise _damaged(_("The image has too many pixels (at most %(limit)s).") % {"limit": limit}) from None
    except AppError:
        raise
    except Exception:
        # Untrusted bytes: whatever the decoder trips on (OSError, SyntaxError, ValueError, EOFError,
        # struct.error …) means the same thing to the user — the image is damaged.
        raise _damaged(_("The image is damaged or incomplete.")) from None
    if fmt not in FORMATS:  # defensive: ``formats=`` already limits what Pillow will open
        raise AppError(errors.ERR_EVID_003, fields={"file": [_("Only JPEG, PNG and WebP images are accepted.")]})
    extension, content_type = FORMATS[fmt]
    return InspectedImage(data=data, sha256=hashlib.sha256(data).hexdigest(), size=len(data), width=width,
                          height=height, extension=extension, content_type=content_type)


def _check_dimensions(width: int, height: int, limit: int, side: int) -> None:
    if width < 1 or height < 1 or width > side or height > side:
        raise _damaged(_("Image dimensions %(w)s×%(h)s are not allowed (each side 1 to %(side)s).")
                       % {"w": width, "h": height, "side": side})
    if width * height > limit:
        raise _damaged(_("The image has too many pixels (at most %(limit)s).") % {"limit": limit})


# --- the request row ------------------------------------------------------------------------------
def _log_failure(locked_pk: int | None, performer: Performer, exc: AppError, payload: dict) -> None:
    if locked_pk is not None:
        oplog.record_failure(locked_pk, performer=performer, action=ACTION, error_code=exc.code,
                             message=exc.detail or str(exc.error.message), payload=payload)


def _check_count(ticket: AfterSalesRequest, role: str, adding: int) -> None:
    """The cap is per request and per role, so the buyer's photos never use up the seller's allowance."""
    cap = max_files()
    existing = Evidence.objects.for_agency(ticket.agency_id).filter(
        ticket=ticket, role=role, kind=Evidence.Kind.IMAGE).count()
    if existing + adding > cap:
        raise AppError(errors.ERR_EVID_002, fields={"file": [_("At most %(n)s images per request.") % {"n": cap}]},
                       data={"max_files": cap, "existing": existing})


def _store(ticket: AfterSalesRequest, image: InspectedImage, *, role: str, note: str,
           uploaded_by: int | None) -> Evidence:
    evidence = Evidence(agency_id=ticket.agency_id, ticket=ticket, role=role, kind=Evidence.Kind.IMAGE,
                        content_type=image.content_type, width=image.width, height=image.height,
                        size=image.size, sha256=image.sha256, note=note, uploaded_by_id=uploaded_by)
    # A random name (not the public id, not the client's name) with the detected extension;
    # upload_to adds evidence/%Y/%m/.
    evidence.file.save(f"{uuid.uuid4().hex}.{image.extension}", ContentFile(image.data), save=False)
    return evidence


def _discard_files(items: list[Evidence]) -> None:
    """Files are not transactional: remove what was written when the rows roll back."""
    for item in items:
        if item.file and item.file.name:
            item.file.storage.delete(item.file.name)


def _clean_note(note: str) -> str:
    note = (note or "").strip()
    if len(note) > MAX_NOTE:
        raise AppError(errors.ERR_VALIDATION, fields={"note": [_("At most %(n)s characters.") % {"n": MAX_NOTE}]})
    return note


def _entry(evidence: Evidence) -> dict:
    return {"evidence_id": str(evidence.public_id), "sha256": evidence.sha256, "size": evidence.size,
            "content_type": evidence.content_type}


# --- seller (and platform) uploads ----------------------------------------------------------------
def upload_evidence(performer: Performer, ticket_id, file, *, role: str = Evidence.Role.SELLER,
                    note: str = "") -> Evidence:
    """Validate one uploaded image and attach it to the request, with its log row (or the refusal's)."""
    filename = str(getattr(file, "name", "") or "")[:MAX_NAME]
    payload = {"filename": filename, "role": str(role)}
    locked_pk: int | None = None
    stored: list[Evidence] = []
    try:
        # Checks first, then the slow part (reading up to the size cap, decoding the image) *without*
        # the request's row lock, so nobody else's action on the request waits for an upload.
        with transaction.atomic():
            ticket = lock_ticket(performer, ticket_id)
            locked_pk = ticket.pk
            _check_uploader(performer, ticket, role)
        clean_note = _clean_note(note)
        image = inspect_image(read_capped(file, max_bytes()))
        with transaction.atomic():
            ticket = lock_ticket(performer, ticket_id)  # again: permissions or the request may have changed
            _check_uploader(performer, ticket, role)
            _check_count(ticket, role, 1)
            try:
                evidence = _store(ticket, image, role=role, note=clean_note, uploaded_by=performer.user_id)
                stored.append(evidence)
                evidence.save()
                oplog.record(ticket, performer=performer, action=ACTION, before=ticket.state, after=ticket.state,
                             payload={**_entry(evidence), "role": evidence.role})
            except BaseException:
                _discard_files(stored)
                raise
            return evidence
    except AppError as exc:
        _log_failure(locked_pk, performer, exc, payload)
        raise


def _check_uploader(performer: Performer, ticket: AfterSalesRequest, role: str) -> None:
    if performer.actor is not None:
        require_store_perm(performer.actor, ticket.store, StorePerm.HANDLE_AFTERSALES)
    if role not in Evidence.Role.values:
        raise AppError(errors.ERR_VALIDATION, fields={"role": [_("Unknown role.")]})
    if performer.is_person and role != Evidence.Role.SELLER:
        # People act for the seller; buyer and platform evidence only arrives from the platform,
        # so nobody can make a photo look as if the buyer had sent it.
        raise AppError(errors.ERR_VALIDATION, fields={"role": [_("People upload seller evidence only.")]})


# --- buyer evidence synced from the platform ------------------------------------------------------
def _clean_video(index: int, video) -> dict:
    prefix = f"videos[{index}]"
    if not isinstance(video, dict):
        raise AppError(errors.ERR_VALIDATION, fields={prefix: [_("Must be an object with a url.")]})
    validate = URLValidator(schemes=["http", "https"])
    url = str(video.get("url") or "").strip()
    cover = str(video.get("cover") or "").strip()
    bad: dict[str, list[str]] = {}
    for key, value, required in (("url", url, True), ("cover", cover, False)):
        if not value:
            if required:
                bad[f"{prefix}.{key}"] = [_("Required.")]
            continue
        try:
            if len(value) > 1000:
                raise DjangoValidationError("too long")
            validate(value)
        except DjangoValidationError:
            bad[f"{prefix}.{key}"] = [_("Must be an http(s) URL of at most 1000 characters.")]
    duration = video.get("duration_millis")
    if duration not in (None, ""):
        try:
            duration = int(duration)
            if duration < 0:
                raise ValueError
        except (TypeError, ValueError):
            bad[f"{prefix}.duration_millis"] = [_("Must be a non-negative whole number.")]
    else:
        duration = None
    if bad:
        raise AppError(errors.ERR_VALIDATION, fields=bad)
    return {"url": url, "cover": cover, "duration_millis": duration}


def add_buyer_evidence(ticket_id, *, images: Iterable[tuple[str, bytes]] = (), videos: Iterable[dict] = (),
                       note: str = "") -> list[Evidence]:
    """Store the buyer's evidence as the platform sent it: all of it, or none (with the refusal logged).

    Sync runs again and again, so an image already stored (same sha256) or a video already linked (same
    url) is skipped; a run that adds nothing writes no row. One log row per run that adds something.
    """
    performer = oplog.BUYER
    images, videos = list(images), list(videos)
    payload: dict = {"images": [str(name)[:MAX_NAME] for name, _data in images] if _all_pairs(images) else [],
                     "videos": len(videos)}
    locked_pk: int | None = None
    stored: list[Evidence] = []
    try:
        with transaction.atomic():
            ticket = lock_ticket(performer, ticket_id)
            locked_pk = ticket.pk
            if not images and not videos:
                raise AppError(errors.ERR_VALIDATION, fields={"images": [_("Nothing to add.")]})
            if not _all_pairs(images):
                raise AppError(errors.ERR_VALIDATION, fields={"images": [_("Send (file name, bytes) pairs.")]})
            clean_note = _clean_note(note)
            clean_videos = [_clean_video(i, v) for i, v in enumerate(videos)]
            inspected = []
            for index, (name, data) in enumerate(images):
                try:
                    if len(data) > max_bytes():
                        raise _too_large(max_bytes())
                    inspected.append(inspect_image(bytes(data)))
                except AppError as exc:
                    exc.data.setdefault("index", index)
                    exc.data.setdefault("filename", str(name)[:MAX_NAME])
                    raise
            known = Evidence.objects.for_agency(ticket.agency_id).filter(ticket=ticket, role=Evidence.Role.BUYER)
            known_hashes = set(known.exclude(sha256="").values_list("sha256", flat=True))
            known_urls = set(known.exclude(url="").values_list("url", flat=True))
            new_images = []
            for image in inspected:
                if image.sha256 not in known_hashes:
                    known_hashes.add(image.sha256)
                    new_images.append(image)
            new_videos = []
            for video in clean_videos:
                if video["url"] not in known_urls:
                    known_urls.add(video["url"])
                    new_videos.append(video)
            if not new_images and not new_videos:
                return []
            _check_count(ticket, Evidence.Role.BUYER, len(new_images))
            try:
                for image in new_images:
                    evidence = _store(ticket, image, role=Evidence.Role.BUYER, note=clean_note, uploaded_by=None)
                    stored.append(evidence)
                    evidence.save()
                linked = [Evidence(agency_id=ticket.agency_id, ticket=ticket, role=Evidence.Role.BUYER,
                                   kind=Evidence.Kind.VIDEO, url=v["url"], cover_url=v.get("cover") or "",
                                   duration_millis=v.get("duration_millis"), note=clean_note) for v in new_videos]
                for evidence in linked:
                    evidence.save()
                oplog.record(ticket, performer=performer, action=ACTION, before=ticket.state, after=ticket.state,
                             payload={"role": Evidence.Role.BUYER,
                                      "images": [_entry(e) for e in stored],
                                      "videos": [{"evidence_id": str(e.public_id), **v}
                                                 for e, v in zip(linked, new_videos, strict=True)]})
            except BaseException:
                _discard_files(stored)
                raise
            return stored + linked
    except AppError as exc:
        _log_failure(locked_pk, performer, exc, {**payload, **exc.data})
        raise


def _all_pairs(images: list) -> bool:
    return all(isinstance(p, (tuple, list)) and len(p) == 2 and isinstance(p[1], (bytes, bytearray, memoryview))
               for p in images)


# --- reading --------------------------------------------------------------------------------------
def evidence_for_actor(actor: Actor | None, ticket) -> QuerySet[Evidence]:
    """The evidence trail of one request as this actor may see it (buyer, seller, platform side by side)."""
    qs = Evidence.objects.for_actor(actor)
    if isinstance(ticket, AfterSalesRequest):
        return qs.filter(ticket_id=ticket.pk)
    if isinstance(ticket, int):
        return qs.filter(ticket_id=ticket)
    try:
        return qs.filter(ticket__public_id=uuid.UUID(str(ticket)))
    except ValueError:
        return qs.none()
