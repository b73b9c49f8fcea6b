"""Demo data for a fresh install (``seed_demo``): one agency per slug, idempotent."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction

from stores import services
from stores.models import Agency, Market, Membership, Role, Store

DEMO_PASSWORD = "demo-pass-2026"

# (market, store name) — 12 stores over the 11 markets (two in the US).
DEMO_STORES = [
    ("US", "Lumière Home US"),
    ("US", "Peak Gear Outdoor US"),
    ("UK", "Bloom & Thread UK"),
    ("CA", "Maple Kitchenware CA"),
    ("MY", "Seri Beauty MY"),
    ("TH", "Siam Style Fashion TH"),
    ("VN", "Saigon Tech Accessories VN"),
    ("PH", "Manila Home Living PH"),
    ("SG", "Lion City Gadgets SG"),
    ("ID", "Nusantara Modest Wear ID"),
    ("SA", "Riyadh Oud & Fragrance SA"),
    ("AE", "Dubai Luxe Accessories AE"),
]
AGENT_STORE_COUNT = 4


@dataclass
class DemoLogins:
    agency: Agency
    usernames: list[str]
    password: str


@transaction.atomic
def seed_agency(slug: str) -> DemoLogins:
    User = get_user_model()
    agency = services.create_agency(slug=slug, name=f"{slug.replace('-', ' ').title()} Agency")
    markets = {m.code: m for m in Market.objects.all()}
    stores: list[Store] = []
    for index, (code, name) in enumerate(DEMO_STORES, start=1):
        checks = index % 5 != 0  # a few stores with missing seller checks, to show eligibility
        stores.append(services.create_store(
            agency=agency, market=markets[code], name=name if slug == "demo" else f"{name} ({slug})",
            shop_id=f"{slug}-{7_000_000 + index}", shop_cipher=f"ROW_{slug}_{index:04d}",
            business_licence_verified=True, legal_person_id_verified=True,
            bank_account_verified=checks, phone_bound=True,
        ))

    def user(role: str) -> object:
        # An address on the reserved example.com domain, so alert e-mails show (in var/mail/ locally).
        account, created = User.objects.get_or_create(username=f"{slug}-{role}",
                                                      defaults={"email": f"{slug}-{role}@example.com"})
        if created or not account.has_usable_password():
            account.set_password(DEMO_PASSWORD)
            account.save(update_fields=["password"])
        return account

    owner, agent, viewer = user("owner"), user("agent"), user("viewer")
    services.add_member(agency=agency, user=owner, owner=True)
    agent_m = services.add_member(agency=agency, user=agent)
    viewer_m = services.add_member(agency=agency, user=viewer)
    roles = {r.slug: r for r in Role.objects.for_agency(agency)}
    services.assign_role(actor=None, membership=agent_m, role=roles["aftersales-agent"],
                         stores=stores[:AGENT_STORE_COUNT])
    # The analyst template is the view-only role: it can read stores and analytics, change nothing.
    services.assign_role(actor=None, membership=viewer_m, role=roles["analyst"], stores=stores)
    return DemoLogins(agency=agency, usernames=[owner.username, agent.username, viewer.username],
                      password=DEMO_PASSWORD)


def member_summary(agency: Agency) -> list[tuple[str, str]]:
    return list(
        Membership.objects.for_agency(agency).order_by("user__username").values_list("user__username", "kind")
    )
