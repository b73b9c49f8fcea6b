"""Demo requests for seed_demo: realistic, in every state, created only through the services."""

from __future__ import annotations

import random
import time
from decimal import Decimal

from aftersales import services
from aftersales.models import AfterSalesRequest
from aftersales.oplog import Performer
from stores.models import Membership, Store
from stores.services import actor_for_user

# (reason key, text shown to sellers) — the top return reasons sellers see (DOMAIN "Analytics").
REASONS = [
    ("colour_difference", "色差 / Colour differs from the photos"),
    ("size_mismatch", "尺寸不符 / Size does not match the size chart"),
    ("shipping_damage", "物流破损 / Damaged in shipping"),
    ("missing_assembly_instructions", "组装说明缺失 / Missing assembly instructions"),
    ("quality_issue", "质量问题 / Quality not as expected"),
    ("wrong_item", "发错货 / Wrong item sent"),
    ("missing_parts", "少件 / Parts missing"),
    ("no_longer_needed", "不想要了 / No longer needed"),
]
REASON_WEIGHTS = [18, 16, 12, 9, 14, 8, 8, 15]

PRODUCTS = {
    "apparel": [("Linen Summer Dress", 39), ("Cotton Oversized Tee", 19), ("High-waist Jeans", 45)],
    "beauty": [("Vitamin C Serum 30ml", 24), ("Matte Lipstick Set", 18), ("Sheet Mask ×10", 12)],
    "home": [("Foldable Storage Shelf", 59), ("Ceramic Dinner Set", 49), ("Blackout Curtains", 35)],
    "3c_accessories": [("65W GaN Charger", 29), ("Magnetic Phone Mount", 15), ("TWS Earbuds", 49)],
}
# Rough price level per currency, so amounts look local.
PRICE_LEVEL = {
    "USD": 1,
    "GBP": Decimal("0.8"),
    "CAD": Decimal("1.35"),
    "MYR": Decimal("4.7"),
    "THB": 36,
    "VND": 25000,
    "PHP": 56,
    "SGD": Decimal("1.35"),
    "IDR": 15500,
    "SAR": Decimal("3.75"),
    "AED": Decimal("3.67"),
}
PLATFORM_TYPES = [("REFUND", 45), ("RETURN_AND_REFUND", 40), ("REPLACEMENT", 15)]

# Scenario → what happens after intake. Weights give a queue with every state represented.
SCENARIOS = {
    "REFUND": [
        ("pending", 30),
        ("approved", 10),
        ("refunded", 30),
        ("partial_refund", 4),
        ("rejected", 8),
        ("arbitration", 4),
        ("ruled_buyer", 2),
        ("evidence", 6),
        ("cancelled", 5),
        ("unknown", 1),
        ("closed", 3),
    ],
    "RETURN_AND_REFUND": [
        ("pending", 22),
        ("awaiting_return", 15),
        ("in_transit", 12),
        ("return_refunded", 22),
        ("package_rejected", 5),
        ("direct_refund", 5),
        ("rejected", 7),
        ("arbitration", 4),
        ("offer", 4),
        ("cancelled", 4),
    ],
    "REPLACEMENT": [
        ("pending", 30),
        ("replacement_approved", 20),
        ("replacement_shipped", 20),
        ("replacement_done", 20),
        ("replacement_refund", 5),
        ("rejected", 5),
    ],
}


def _pick(rng: random.Random, weighted):
    values, weights = zip(*weighted, strict=True)
    return rng.choices(values, weights=weights)[0]


def _payload(rng: random.Random, store: Store, n: int, ptype: str) -> dict:
    category = rng.choice(list(PRODUCTS))
    product, base = rng.choice(PRODUCTS[category])
    currency = store.market.currency
    level = Decimal(str(PRICE_LEVEL.get(currency, 1)))
    qty = rng.choice([1, 1, 1, 2])
    subtotal = (Decimal(base) * level * qty).quantize(Decimal("0.01"))
    shipping = (Decimal("3.99") * level).quantize(Decimal("0.01")) if rng.random() < 0.3 else Decimal("0")
    total = subtotal + shipping
    reason_key, reason_text = _pick(rng, list(zip(REASONS, REASON_WEIGHTS, strict=True)))
    now = int(time.time())
    created = now - rng.randint(600, 45 * 86400)
    buyer = rng.randint(1, max(20, n // 3))  # repeat buyers, so buyer history has something to show
    return {
        "return_id": f"{store.shop_id}-R{n:06d}",
        "order_id": f"57{rng.randint(10**15, 10**16 - 1)}",
        "return_type": ptype,
        "return_status": "REPLACEMENT_REQUEST_PENDING"
        if ptype == "REPLACEMENT"
        else "RETURN_OR_REFUND_REQUEST_PENDING",
        "role": "BUYER",
        "return_reason": reason_key,
        "return_reason_text": reason_text,
        "buyer_user_id": f"{store.market.code.lower()}-buyer-{buyer:04d}",
        "buyer_name": f"Buyer {buyer:04d}",
        "refund_amount": {
            "currency": currency,
            "refund_total": str(total),
            "refund_subtotal": str(subtotal),
            "refund_shipping_fee": str(shipping),
            "refund_tax": "0",
        },
        "seller_next_action_response": [{"action": "SELLER_RESPOND_REFUND", "deadline": created + 48 * 3600}],
        "shipment_type": rng.choice(["PLATFORM", "BUYER_ARRANGE"]),
        "handover_method": rng.choice(["DROP_OFF", "PICKUP"]),
        "return_line_items": [
            {
                "return_line_item_id": f"L{n:06d}",
                "order_line_item_id": f"OL{n:06d}",
                "sku_id": f"SKU-{category}-{n % 97}",
                "seller_sku": f"{category[:3].upper()}-{n % 97:03d}",
                "sku_name": product,
                "product_name": product,
                "category": category,
                "quantity": qty,
                "refund_amount": {"currency": currency, "refund_total": str(subtotal)},
            }
        ],
        "create_time": created,
        "update_time": created + rng.randint(60, 3600),
    }


def _play(rng: random.Random, scenario: str, ticket: AfterSalesRequest, seller: Performer) -> None:
    pid = ticket.public_id
    reason = services.DEFAULT_REJECT_REASONS[rng.randrange(len(services.DEFAULT_REJECT_REASONS))]["name"]
    tracking = f"DEMO{rng.randint(10**9, 10**10 - 1)}"
    steps = {
        "pending": [],
        "approved": [lambda: services.approve(seller, pid, "APPROVE_REFUND")],
        "refunded": [lambda: services.approve(seller, pid, "APPROVE_REFUND"), lambda: services.refund(seller, pid)],
        "partial_refund": [
            lambda: services.approve(seller, pid, "APPROVE_REFUND"),
            lambda: services.refund(seller, pid, amount=str((ticket.refund_total / 2).quantize(Decimal("0.01")))),
        ],
        "rejected": [lambda: services.reject(seller, pid, reason=reason, comment="Photos show the item as listed.")],
        "arbitration": [
            lambda: services.reject(seller, pid, reason=reason, comment="Not as described by buyer."),
            lambda: services.record_arbitration(seller, pid, "IN_PROGRESS"),
        ],
        "ruled_buyer": [
            lambda: services.reject(seller, pid, reason=reason),
            lambda: services.record_arbitration(seller, pid, "IN_PROGRESS"),
            lambda: services.record_arbitration(seller, pid, "SUPPORT_BUYER"),
        ],
        "closed": [
            lambda: services.reject(seller, pid, reason=reason, comment="Agreed with the buyer in chat."),
            lambda: services.close(seller, pid, comment="Buyer accepted the explanation."),
        ],
        "evidence": [lambda: services.request_evidence(seller, pid, message="Please send a clear photo of the label.")],
        "cancelled": [lambda: services.buyer_cancelled(pid)],
        "unknown": [lambda: services.apply_platform_status(pid, "RETURN_OR_REFUND_REQUEST_ON_HOLD")],
        "awaiting_return": [lambda: services.approve(seller, pid, "APPROVE_RETURN")],
        "in_transit": [
            lambda: services.approve(seller, pid, "APPROVE_RETURN"),
            lambda: services.buyer_shipped(pid, tracking_number=tracking),
        ],
        "return_refunded": [
            lambda: services.approve(seller, pid, "APPROVE_RETURN"),
            lambda: services.buyer_shipped(pid, tracking_number=tracking),
            lambda: services.approve(seller, pid, "APPROVE_RECEIVED_PACKAGE"),
            lambda: services.refund(seller, pid),
        ],
        "package_rejected": [
            lambda: services.approve(seller, pid, "APPROVE_RETURN"),
            lambda: services.buyer_shipped(pid, tracking_number=tracking),
            lambda: services.reject(seller, pid, reason=reason, comment="Item returned used."),
        ],
        "direct_refund": [lambda: services.approve(seller, pid, "APPROVE_RETURN", buyer_keep_item=True)],
        "offer": [
            lambda: services.approve(
                seller,
                pid,
                "OFFER_PARTIAL_REFUND",
                partial_refund=str((ticket.refund_total * Decimal("0.3")).quantize(Decimal("0.01"))),
            )
        ],
        "replacement_approved": [lambda: services.approve(seller, pid, "APPROVE_REPLACEMENT")],
        "replacement_shipped": [
            lambda: services.approve(seller, pid, "APPROVE_REPLACEMENT"),
            lambda: services.ship_replacement(seller, pid, carrier="J&T", tracking_number=tracking),
        ],
        "replacement_done": [
            lambda: services.approve(seller, pid, "APPROVE_REPLACEMENT"),
            lambda: services.ship_replacement(seller, pid, carrier="J&T", tracking_number=tracking),
            lambda: services.replacement_delivered(pid),
        ],
        "replacement_refund": [
            lambda: services.approve(seller, pid, "ISSUE_REPLACEMENT_REFUND"),
            lambda: services.refund(seller, pid),
        ],
    }
    for action in steps[scenario]:
        action()


def _photo(rng: random.Random, label: str) -> bytes:
    """A small generated JPEG standing in for a buyer's or seller's photo."""
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (480, 360), tuple(rng.randint(120, 230) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = rng.randint(0, 400), rng.randint(0, 280)
        draw.rectangle(
            [x, y, x + rng.randint(30, 120), y + rng.randint(30, 90)],
            outline=tuple(rng.randint(0, 120) for _ in range(3)),
            width=4,
        )
    draw.text((12, 12), label, fill=(20, 20, 20))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=70)
    return out.getvalue()


def _evidence(rng: random.Random, scenario: str, ticket: AfterSalesRequest, seller: Performer) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from aftersales import evidence

    if rng.random() < 0.12:
        videos = [{"url": f"https://video.example.com/{ticket.return_id}.mp4", "duration_millis": 14000}]
        evidence.add_buyer_evidence(
            ticket.pk,
            images=[(f"{ticket.return_id}.jpg", _photo(rng, ticket.reason_text[:2]))],
            videos=videos if rng.random() < 0.3 else (),
            note="Buyer photo",
        )
    if scenario in {"rejected", "package_rejected", "arbitration"} and rng.random() < 0.5:
        upload = SimpleUploadedFile("seller.jpg", _photo(rng, "QC"), content_type="image/jpeg")
        evidence.upload_evidence(seller, ticket.pk, upload, note="Packing photo before dispatch")


def seed_tickets(agency_id: int, per_store: int, *, seed: str = "2026") -> int:
    """Create ``per_store`` requests in each store of the agency, once (skipped when it has any)."""
    if AfterSalesRequest.objects.for_agency(agency_id).exists():
        return 0
    owner = (
        Membership.objects.for_agency(agency_id)
        .filter(kind=Membership.Kind.OWNER)
        .select_related("user", "agency")
        .first()
    )
    seller = Performer.of(actor_for_user(owner.user))
    # Seeded by the agency's slug, so the same slug always gets the same demo (ids differ per database).
    rng = random.Random(f"{seed}:{owner.agency.slug}")
    count = 0
    for store in Store.objects.for_agency(agency_id).select_related("market").order_by("id"):
        for n in range(per_store):
            ptype = _pick(rng, PLATFORM_TYPES)
            ticket, _created = services.intake(store, _payload(rng, store, n, ptype))
            scenario = _pick(rng, SCENARIOS[ptype])
            _play(rng, scenario, ticket, seller)
            _evidence(rng, scenario, ticket, seller)
            count += 1
    return count


# Units sold per units asked back in the demo, by category: apparel lands near its 12.4 % benchmark (some
# stores above it), the others well under — so the return rate next to the benchmarks has something to say.
DEMO_SOLD_PER_RETURN = {"apparel": (6, 11), "beauty": (25, 40), "home": (18, 30), "3c_accessories": (14, 24)}


def seed_order_volumes(agency_id: int, *, days: int = 45, seed: str = "2026") -> int:
    """Daily units sold per store and category (what an ERP would push), idempotent per agency."""
    import datetime as dt

    from django.db.models import Sum
    from django.db.models.functions import Coalesce, TruncDate
    from django.utils import timezone

    from aftersales.models import LineItem, OrderVolume

    rng = random.Random(f"{seed}:volumes:{agency_id}")  # demo data, not secrets
    today = timezone.now().date()
    asked = {(r["ticket__store_id"], r["day"], r["category"]): r["units"] for r in
             LineItem.objects.filter(ticket__agency_id=agency_id)
             .annotate(day=TruncDate(Coalesce("ticket__platform_created_at", "ticket__created_at")))
             .filter(day__gte=today - dt.timedelta(days=days))
             .values("ticket__store_id", "day", "category").annotate(units=Sum("quantity"))}
    rows = []
    for (store_id, day, category), units in sorted(asked.items()):
        low, high = DEMO_SOLD_PER_RETURN.get(category, (15, 25))
        sold = max(1, round((units or 1) * rng.uniform(low, high)))
        rows.append(OrderVolume(agency_id=agency_id, store_id=store_id, day=day, category=category or "",
                                units_sold=sold, orders=max(1, round(sold * 0.9))))
    OrderVolume.objects.bulk_create(rows, update_conflicts=True, unique_fields=["store", "day", "category"],
                                    update_fields=["units_sold", "orders", "updated_at"])
    return len(rows)
