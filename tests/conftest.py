"""Every fixture set has two agencies, so every test can ask: does the other tenant leak in?"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from rest_framework.test import APIClient

from stores import services
from stores.models import Agency, Market, Membership, Role, Store
from stores.scoping import Actor
from tests.factories import StoreFactory, UserFactory


@dataclass
class Tenant:
    agency: Agency
    owner: object
    agent: object  # sub-account: after-sales agent on the first 2 stores
    viewer: object  # sub-account: analyst (view only) on every store
    outsider: object  # sub-account with no role at all
    stores: list[Store] = field(default_factory=list)
    roles: dict[str, Role] = field(default_factory=dict)

    def actor(self, user) -> Actor:
        return services.actor_for_user(user)

    def membership(self, user) -> Membership:
        return Membership.objects.for_agency(self.agency).get(user=user)


def make_tenant(slug: str, n_stores: int = 3) -> Tenant:
    agency = services.create_agency(slug=slug, name=slug.title())
    markets = list(Market.objects.order_by("code"))
    stores = [StoreFactory(agency=agency, market=markets[i % len(markets)], name=f"{slug} store {i}")
              for i in range(n_stores)]
    owner, agent, viewer, outsider = (UserFactory(username=f"{slug}-{r}") for r in
                                      ("owner", "agent", "viewer", "outsider"))
    services.add_member(agency=agency, user=owner, owner=True)
    m_agent = services.add_member(agency=agency, user=agent)
    m_viewer = services.add_member(agency=agency, user=viewer)
    services.add_member(agency=agency, user=outsider)
    roles = {r.slug: r for r in Role.objects.for_agency(agency)}
    services.assign_role(actor=None, membership=m_agent, role=roles["aftersales-agent"], stores=stores[:2])
    services.assign_role(actor=None, membership=m_viewer, role=roles["analyst"], stores=stores)
    return Tenant(agency=agency, owner=owner, agent=agent, viewer=viewer, outsider=outsider,
                  stores=stores, roles=roles)


@pytest.fixture
def tenants(db):
    a = make_tenant("alpha")
    b = make_tenant("bravo")
    services.create_api_token(user=a.agent, name="fixture")
    services.create_api_token(user=b.agent, name="fixture")
    return a, b


@pytest.fixture
def api():
    def client_for(user=None, token: bool = True) -> APIClient:
        client = APIClient()
        if user is not None:
            if token:
                _token, key = services.create_api_token(user=user, name="test")
                client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
            else:
                client.force_login(user)
        return client

    return client_for
