"""上传凭证: the type comes from the bytes, every limit has its code, every outcome is one log row."""

from __future__ import annotations

import hashlib
import io
import re
import struct
import zlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from aftersales import evidence, oplog, services
from aftersales.models import Evidence, OperationLog
from aftersales.oplog import Performer
from stores.errors import AppError
from tests.conftest import platform_return

ACTION = "upload_evidence"


# --- image makers --------------------------------------------------------------------------------------
def image_bytes(fmt: str, size=(64, 48), mode="RGB", noise=False) -> bytes:
    if noise:
        img = Image.frombytes("RGB", size, bytes((i * 7919) % 251 for i in range(size[0] * size[1] * 3)))
    else:
        img = Image.new(mode, size, (200, 30, 30) if mode == "RGB" else 1)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int, height: int) -> bytes:
    """A real, complete 1-bit PNG of width×height that compresses to a few dozen KB.

    Rows are compressed one at a time, so the test never holds the decoded image in memory.
    """
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def upload(name: str, data: bytes, content_type: str = "image/gif") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


# --- fixtures ------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def ticket(tenants):
    a, _b = tenants
    created, _ = services.intake(a.stores[0], platform_return())
    return created


@pytest.fixture
def agent(tenants):
    a, _b = tenants
    return Performer.of(a.actor(a.agent))


def log_rows(ticket, action=ACTION):
    return list(OperationLog.objects.filter(ticket=ticket, action=action))


def stored_files(root) -> list:
    return [p for p in root.rglob("*") if p.is_file()]


def refuse(performer, ticket, file, code, **kwargs) -> AppError:
    with pytest.raises(AppError) as info:
        evidence.upload_evidence(performer, ticket.public_id, file, **kwargs)
    assert info.value.code == code
    return info.value


# --- accepted ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("fmt", "ext", "content_type"), [
    ("JPEG", "jpg", "image/jpeg"), ("PNG", "png", "image/png"), ("WEBP", "webp", "image/webp")])
@pytest.mark.parametrize("name", ["payload.exe", "photo.gif", "no-extension"])
def test_valid_image_is_stored_under_a_generated_name_with_the_detected_extension(
        tenants, ticket, agent, media, fmt, ext, content_type, name):
    a, _b = tenants
    data = image_bytes(fmt)
    item = evidence.upload_evidence(agent, ticket.public_id, upload(name, data), note="  broken seam  ")
    item.refresh_from_db()
    assert re.fullmatch(rf"evidence/\d{{4}}/\d{{2}}/[0-9a-f]{{32}}\.{ext}", item.file.name)
    assert name.split(".")[0] not in item.file.name.rsplit("/", 1)[-1]
    assert (item.content_type, item.width, item.height, item.size) == (content_type, 64, 48, len(data))
    assert item.sha256 == hashlib.sha256(data).hexdigest()
    assert (item.role, item.kind, item.note, item.uploaded_by_id) == ("seller", "image", "broken seam", a.agent.pk)
    assert item.agency_id == a.agency.pk
    assert (media / item.file.name).read_bytes() == data
    [row] = log_rows(ticket)
    assert row.ok and row.actor_user_id == a.agent.pk and row.actor_kind == "sub_account"
    assert row.state_before == row.state_after == ticket.state
    assert row.payload == {"evidence_id": str(item.public_id), "sha256": item.sha256, "size": len(data),
                           "content_type": content_type, "role": "seller"}


def test_the_clients_content_type_is_ignored(ticket, agent):
    item = evidence.upload_evidence(agent, ticket.pk, upload("x.png", image_bytes("JPEG"), "image/png"))
    assert item.content_type == "image/jpeg" and item.file.name.endswith(".jpg")


def test_a_plain_file_object_without_a_name_works(ticket, agent):
    item = evidence.upload_evidence(agent, ticket.public_id, io.BytesIO(image_bytes("PNG")))
    assert item.file.name.endswith(".png")
    assert log_rows(ticket)[0].ok


def test_the_owner_may_upload_on_any_store(tenants):
    a, _b = tenants
    third, _ = services.intake(a.stores[2], platform_return())
    owner = Performer.of(a.actor(a.owner))
    item = evidence.upload_evidence(owner, third.public_id, upload("a.jpg", image_bytes("JPEG")))
    assert item.uploaded_by_id == a.owner.pk


def test_a_platform_performer_may_upload_platform_evidence(ticket):
    item = evidence.upload_evidence(oplog.PLATFORM, ticket.pk, upload("p.jpg", image_bytes("JPEG")),
                                    role=Evidence.Role.PLATFORM)
    assert item.role == "platform" and item.uploaded_by_id is None
    assert log_rows(ticket)[0].actor_kind == "platform"


# --- refused, each with its own code and one failure row ----------------------------------------------
FAILURES = {
    "text named .jpg": (lambda: upload("photo.jpg", b"just some text, not an image\n" * 20, "image/jpeg"),
                        "ERR_EVID_003"),
    "gif": (lambda: upload("anim.gif", image_bytes("GIF")), "ERR_EVID_003"),
    "bmp named .png": (lambda: upload("x.png", image_bytes("BMP"), "image/png"), "ERR_EVID_003"),
    "truncated jpeg": (lambda: upload("cut.jpg", image_bytes("JPEG", (640, 480), noise=True)[:3000]),
                       "ERR_EVID_004"),
    "truncated png": (lambda: upload("cut.png", image_bytes("PNG", (640, 480), noise=True)[:2000]),
                      "ERR_EVID_004"),
    "truncated webp": (lambda: upload("cut.webp", image_bytes("WEBP", (640, 480), noise=True)[:500]),
                       "ERR_EVID_004"),
    "png with a bad checksum": (lambda: upload("crc.png", _corrupt_png()), "ERR_EVID_004"),
    "empty file": (lambda: upload("empty.jpg", b""), "ERR_EVID_004"),
    "decompression bomb": (lambda: upload("bomb.png", png_bomb(20000, 20000)), "ERR_EVID_004"),
    "over our pixel limit": (lambda: upload("big.png", png_bomb(7000, 7000)), "ERR_EVID_004"),
}


def _corrupt_png() -> bytes:
    data = bytearray(image_bytes("PNG", (64, 48), noise=True))
    data[60:64] = b"\xff\xff\xff\xff"  # inside IDAT: its CRC no longer matches
    return bytes(data)


@pytest.mark.parametrize("case", list(FAILURES))
def test_each_refusal_raises_its_code_and_writes_one_failure_row(ticket, agent, media, case):
    make, code = FAILURES[case]
    refuse(agent, ticket, make(), code)
    [row] = log_rows(ticket)
    assert row.error_code == code and not row.ok
    assert row.state_before == row.state_after == ticket.state
    assert row.payload["role"] == "seller"
    assert not Evidence.objects.for_agency(ticket.agency_id).exists()
    assert stored_files(media) == []


def test_the_bomb_is_small_on_disk(ticket, agent):
    bomb = png_bomb(20000, 20000)
    assert len(bomb) < 200_000  # 400 megapixels in a file far below the size cap
    error = refuse(agent, ticket, upload("bomb.png", bomb), "ERR_EVID_004")
    assert error.fields["file"]


def test_pillows_bomb_threshold_caps_a_higher_setting(settings, ticket, agent):
    from PIL import Image

    # 12000×12000 = 144 MP: above Pillow's warning threshold (~89 MP), below its hard error (~179 MP).
    settings.EVIDENCE_MAX_PIXELS = 500_000_000
    settings.EVIDENCE_MAX_SIDE = 50_000
    with pytest.warns(Image.DecompressionBombWarning):  # Pillow warns on reading the header; we refuse
        refuse(agent, ticket, upload("warn.png", png_bomb(12000, 12000)), "ERR_EVID_004")
    assert log_rows(ticket)[0].error_code == "ERR_EVID_004"


def test_pixel_and_side_limits_come_from_settings(settings, ticket, agent):
    settings.EVIDENCE_MAX_PIXELS = 1000
    refuse(agent, ticket, upload("a.jpg", image_bytes("JPEG", (64, 48))), "ERR_EVID_004")
    settings.EVIDENCE_MAX_PIXELS = 40_000_000
    settings.EVIDENCE_MAX_SIDE = 50
    refuse(agent, ticket, upload("b.jpg", image_bytes("JPEG", (64, 48))), "ERR_EVID_004")
    settings.EVIDENCE_MAX_SIDE = 64
    evidence.upload_evidence(agent, ticket.pk, upload("c.jpg", image_bytes("JPEG", (64, 48))))
    assert [r.error_code for r in log_rows(ticket)] == ["ERR_EVID_004", "ERR_EVID_004", ""]


def test_over_the_size_cap(settings, ticket, agent, media):
    settings.EVIDENCE_MAX_BYTES = 1000
    data = image_bytes("JPEG", (200, 200), noise=True)
    assert len(data) > 1000
    error = refuse(agent, ticket, upload("big.jpg", data), "ERR_EVID_001")
    assert error.data["max_bytes"] == 1000
    assert [r.error_code for r in log_rows(ticket)] == ["ERR_EVID_001"]
    assert stored_files(media) == []


def test_the_size_cap_holds_for_a_file_object_that_declares_no_size(settings, ticket, agent):
    settings.EVIDENCE_MAX_BYTES = 1000
    stream = io.BytesIO(image_bytes("JPEG", (200, 200), noise=True))
    assert not hasattr(stream, "size")
    refuse(agent, ticket, stream, "ERR_EVID_001")


def test_exactly_at_the_size_cap_is_accepted(settings, ticket, agent):
    data = image_bytes("PNG")
    settings.EVIDENCE_MAX_BYTES = len(data)
    evidence.upload_evidence(agent, ticket.pk, upload("a.png", data))


def test_count_cap_per_request(settings, ticket, agent):
    settings.EVIDENCE_MAX_FILES = 2
    for i in range(2):
        evidence.upload_evidence(agent, ticket.pk, upload(f"{i}.jpg", image_bytes("JPEG")))
    error = refuse(agent, ticket, upload("3.jpg", image_bytes("JPEG")), "ERR_EVID_002")
    assert error.data == {"max_files": 2, "existing": 2}
    assert [r.error_code for r in log_rows(ticket)] == ["", "", "ERR_EVID_002"]
    assert Evidence.objects.for_agency(ticket.agency_id).count() == 2


def test_count_cap_is_per_request(settings, tenants, ticket, agent):
    a, _b = tenants
    settings.EVIDENCE_MAX_FILES = 1
    other, _ = services.intake(a.stores[0], platform_return())
    evidence.upload_evidence(agent, ticket.pk, upload("a.jpg", image_bytes("JPEG")))
    evidence.upload_evidence(agent, other.pk, upload("b.jpg", image_bytes("JPEG")))


def test_buyer_images_do_not_use_up_the_sellers_allowance(settings, ticket, agent):
    settings.EVIDENCE_MAX_FILES = 2
    evidence.add_buyer_evidence(ticket.pk, images=[("a.jpg", image_bytes("JPEG")),
                                                   ("b.png", image_bytes("PNG"))])
    evidence.upload_evidence(agent, ticket.pk, upload("s1.jpg", image_bytes("JPEG")))
    evidence.upload_evidence(agent, ticket.pk, upload("s2.jpg", image_bytes("JPEG")))
    refuse(agent, ticket, upload("s3.jpg", image_bytes("JPEG")), "ERR_EVID_002")


def test_sub_account_without_handle_aftersales_is_refused_and_logged(tenants, ticket):
    a, _b = tenants
    viewer = Performer.of(a.actor(a.viewer))  # analyst: sees the store, may not handle after-sales
    refuse(viewer, ticket, upload("a.jpg", image_bytes("JPEG")), "ERR_PERM_001")
    [row] = log_rows(ticket)
    assert row.error_code == "ERR_PERM_001" and row.actor_user_id == a.viewer.pk


@pytest.mark.parametrize("who", ["other tenant's owner", "outsider", "agent on an ungranted store"])
def test_requests_the_actor_cannot_see_are_not_found_and_not_logged(tenants, who):
    a, b = tenants
    store = a.stores[2] if who == "agent on an ungranted store" else a.stores[0]
    target, _ = services.intake(store, platform_return())
    user = {"other tenant's owner": (b, b.owner), "outsider": (a, a.outsider),
            "agent on an ungranted store": (a, a.agent)}[who]
    performer = Performer.of(user[0].actor(user[1]))
    refuse(performer, target, upload("a.jpg", image_bytes("JPEG")), "ERR_NOT_FOUND")
    assert log_rows(target) == []


def test_unknown_ids_are_not_found(agent):
    for bad in (10**9, "not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        with pytest.raises(AppError) as info:
            evidence.upload_evidence(agent, bad, upload("a.jpg", image_bytes("JPEG")))
        assert info.value.code == "ERR_NOT_FOUND"


def test_people_upload_seller_evidence_only(ticket, agent):
    refuse(agent, ticket, upload("a.jpg", image_bytes("JPEG")), "ERR_VALIDATION", role=Evidence.Role.BUYER)
    refuse(agent, ticket, upload("a.jpg", image_bytes("JPEG")), "ERR_VALIDATION", role="nonsense")
    assert [r.error_code for r in log_rows(ticket)] == ["ERR_VALIDATION", "ERR_VALIDATION"]


def test_note_is_capped(ticket, agent):
    refuse(agent, ticket, upload("a.jpg", image_bytes("JPEG")), "ERR_VALIDATION", note="x" * 501)


def test_missing_file_is_a_validation_error(ticket, agent):
    refuse(agent, ticket, None, "ERR_VALIDATION")


def test_file_is_removed_when_the_transaction_rolls_back(monkeypatch, ticket, agent, media):
    def broken(*args, **kwargs):
        raise RuntimeError("log write failed")

    monkeypatch.setattr(evidence.oplog, "record", broken)
    with pytest.raises(RuntimeError):
        evidence.upload_evidence(agent, ticket.pk, upload("a.jpg", image_bytes("JPEG")))
    assert stored_files(media) == []
    assert not Evidence.objects.for_agency(ticket.agency_id).exists()


def test_upload_does_not_change_the_requests_state(ticket, agent):
    before = ticket.state
    evidence.upload_evidence(agent, ticket.pk, upload("a.jpg", image_bytes("JPEG")))
    ticket.refresh_from_db()
    assert ticket.state == before


# --- buyer evidence from the platform -----------------------------------------------------------------
def test_buyer_evidence_images_and_videos_in_one_log_row(ticket, media):
    jpg, png = image_bytes("JPEG"), image_bytes("PNG")
    video = {"url": "https://v.tiktok.example/abc.mp4", "cover": "https://p.example/c.jpg", "duration_millis": 12000}
    items = evidence.add_buyer_evidence(ticket.pk, images=[("IMG_1.HEIC", jpg), ("b", png)], videos=[video],
                                        note="buyer says: broken")
    assert [(e.kind, e.role) for e in items] == [("image", "buyer"), ("image", "buyer"), ("video", "buyer")]
    assert items[0].file.name.endswith(".jpg") and items[1].file.name.endswith(".png")
    assert items[2].url == video["url"] and not items[2].file
    assert all(e.uploaded_by_id is None and e.note == "buyer says: broken" for e in items)
    assert len(stored_files(media)) == 2
    [row] = log_rows(ticket)
    assert row.actor_kind == "buyer" and row.ok
    assert [i["sha256"] for i in row.payload["images"]] == [hashlib.sha256(d).hexdigest() for d in (jpg, png)]
    assert row.payload["videos"] == [{"evidence_id": str(items[2].public_id), **video}]


def test_buyer_evidence_sync_is_idempotent(ticket):
    images = [("a.jpg", image_bytes("JPEG"))]
    videos = [{"url": "https://v.example/1.mp4"}]
    assert len(evidence.add_buyer_evidence(ticket.pk, images=images, videos=videos)) == 2
    assert evidence.add_buyer_evidence(ticket.pk, images=images, videos=videos) == []
    # The same photo twice in one batch is stored once.
    more = evidence.add_buyer_evidence(ticket.pk, images=[("b.png", image_bytes("PNG"))] * 2)
    assert len(more) == 1
    assert len(log_rows(ticket)) == 2
    assert Evidence.objects.for_agency(ticket.agency_id).count() == 3


def test_one_bad_buyer_image_refuses_the_batch_with_one_failure_row(ticket, media):
    images = [("ok.jpg", image_bytes("JPEG")), ("evil.jpg", b"MZ\x90\x00 not an image")]
    with pytest.raises(AppError) as info:
        evidence.add_buyer_evidence(ticket.pk, images=images)
    assert info.value.code == "ERR_EVID_003"
    [row] = log_rows(ticket)
    assert row.error_code == "ERR_EVID_003" and row.actor_kind == "buyer"
    assert row.payload["index"] == 1 and row.payload["filename"] == "evil.jpg"
    assert stored_files(media) == []
    assert not Evidence.objects.for_agency(ticket.agency_id).exists()


@pytest.mark.parametrize(("images", "videos", "code"), [
    ([("bomb.png", png_bomb(20000, 20000))], [], "ERR_EVID_004"),
    ([], [{"url": "javascript:alert(1)"}], "ERR_VALIDATION"),
    ([], [{"cover": "https://p.example/c.jpg"}], "ERR_VALIDATION"),
    ([], [{"url": "https://v.example/1.mp4", "duration_millis": -5}], "ERR_VALIDATION"),
    ([], ["https://v.example/1.mp4"], "ERR_VALIDATION"),
    ([("a.jpg", "not bytes")], [], "ERR_VALIDATION"),
    ([], [], "ERR_VALIDATION"),
])
def test_buyer_evidence_refusals(ticket, images, videos, code):
    with pytest.raises(AppError) as info:
        evidence.add_buyer_evidence(ticket.pk, images=images, videos=videos)
    assert info.value.code == code
    assert [r.error_code for r in log_rows(ticket)] == [code]


def test_buyer_evidence_respects_size_and_count_caps(settings, ticket):
    settings.EVIDENCE_MAX_FILES = 1
    with pytest.raises(AppError) as info:
        evidence.add_buyer_evidence(ticket.pk, images=[("a.jpg", image_bytes("JPEG")), ("b.png", image_bytes("PNG"))])
    assert info.value.code == "ERR_EVID_002"
    settings.EVIDENCE_MAX_BYTES = 100
    with pytest.raises(AppError) as info:
        evidence.add_buyer_evidence(ticket.pk, images=[("a.jpg", image_bytes("JPEG"))])
    assert info.value.code == "ERR_EVID_001"


def test_buyer_evidence_on_an_unknown_request(db):
    with pytest.raises(AppError) as info:
        evidence.add_buyer_evidence(10**9, videos=[{"url": "https://v.example/1.mp4"}])
    assert info.value.code == "ERR_NOT_FOUND"


# --- reading the trail ---------------------------------------------------------------------------------
def test_evidence_for_actor_follows_the_scoping_gate(tenants, ticket, agent):
    a, b = tenants
    evidence.add_buyer_evidence(ticket.pk, videos=[{"url": "https://v.example/1.mp4"}])
    mine = evidence.upload_evidence(agent, ticket.pk, upload("a.jpg", image_bytes("JPEG")))
    for user in (a.owner, a.agent, a.viewer):
        trail = evidence.evidence_for_actor(a.actor(user), ticket)
        assert [e.role for e in trail] == ["buyer", "seller"]
    assert list(evidence.evidence_for_actor(a.actor(a.agent), ticket.public_id))[-1] == mine
    assert list(evidence.evidence_for_actor(a.actor(a.agent), str(ticket.public_id)))[-1] == mine
    assert evidence.evidence_for_actor(a.actor(a.agent), ticket.pk).count() == 2
    assert not evidence.evidence_for_actor(a.actor(a.outsider), ticket).exists()
    assert not evidence.evidence_for_actor(b.actor(b.owner), ticket).exists()
    assert not evidence.evidence_for_actor(None, ticket).exists()
    assert not evidence.evidence_for_actor(a.actor(a.owner), "junk").exists()
