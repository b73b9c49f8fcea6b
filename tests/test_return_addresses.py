"""退货地址管理: E.164 phones per market, exactly one default per store and market, scoped to the tenant."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connections

from logistics import addresses
from logistics.models import ReturnAddress
from stores import services as store_services
from stores.errors import AppError
from stores.models import Market
from tests.factories import StoreFactory

VALID = {"warehouse": "Main", "contact_name": "Li Wei", "line1": "1 Market St", "city": "Springfield"}


def store_in(tenant, code: str):
    """A store of the tenant in one market, with the tenant's agent holding the agent role on it."""
    store = StoreFactory(agency=tenant.agency, market=Market.objects.get(code=code), name=f"{code} shop")
    membership = tenant.membership(tenant.agent)
    store_services.assign_role(actor=None, membership=membership, role=tenant.roles["aftersales-agent"],
                               stores=[store])
    store_services.assign_role(actor=None, membership=tenant.membership(tenant.viewer),
                               role=tenant.roles["analyst"], stores=[store])
    return store


@pytest.fixture
def us(tenants):
    return store_in(tenants[0], "US")


@pytest.fixture
def agent(tenants):
    a, _b = tenants
    return a.actor(a.agent)


def add(actor, store, phone="+1 650 253 0000", **fields):
    return addresses.create_return_address(actor, store.public_id, phone=phone, **{**VALID, **fields})


def refuse(code, fn, *args, **kwargs) -> AppError:
    with pytest.raises(AppError) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, info.value
    return info.value


def defaults(store):
    return list(ReturnAddress.objects.for_agency(store.agency_id).filter(store=store, is_default=True)
                .values_list("warehouse", flat=True))


# --- phones --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("market", "typed", "e164"), [
    ("US", "(650) 253-0000", "+16502530000"),
    ("US", "+1 650 253 0000", "+16502530000"),
    ("US", "1-800-FLOWERS", "+18003569377"),
    ("CA", "416 979 2000", "+14169792000"),
    ("UK", "020 7946 0958", "+442079460958"),
    ("UK", "+44 7911 123456", "+447911123456"),  # a +44 range of Jersey: same calling code, accepted
    ("ID", "0812-3456-7890", "+6281234567890"),
    ("ID", "021 2992 7000", "+622129927000"),
    ("SA", "050 123 4567", "+966501234567"),
    ("AE", "050 123 4567", "+971501234567"),
    ("MY", "012-345 6789", "+60123456789"),
    ("TH", "081 234 5678", "+66812345678"),
    ("VN", "091 234 56 78", "+84912345678"),
    ("PH", "0917 123 4567", "+639171234567"),
    ("SG", "8123 4567", "+6581234567"),
])
def test_phones_are_stored_in_e164_using_the_markets_country(tenants, agent, market, typed, e164):
    store = store_in(tenants[0], market)
    address = add(agent, store, typed)
    address.refresh_from_db()
    assert address.phone == e164
    assert address.market_id == store.market_id and address.agency_id == tenants[0].agency.pk


@pytest.mark.parametrize(("market", "typed"), [
    ("US", "123"),
    ("US", "not a number"),
    ("US", ""),
    ("US", "+44 20 7946 0958"),  # valid, but in another country
    ("UK", "+1 650 253 0000"),
    ("ID", "0812"),
    ("ID", "+62 812 3456 7890 ext 12"),
    ("SA", "1" * 41),
])
def test_invalid_phones_are_refused_with_err_log_501(tenants, agent, market, typed):
    store = store_in(tenants[0], market)
    error = refuse("ERR_LOG_501", add, agent, store, typed)
    assert list(error.fields) == ["phone"] and error.fields["phone"][0]
    assert not ReturnAddress.objects.unscoped().exists()


def test_normalise_phone_helper():
    assert addresses.normalise_phone(" 0812 3456 7890 ", "ID") == "+6281234567890"
    assert refuse("ERR_LOG_501", addresses.normalise_phone, None, "GB").fields == {"phone": ["Required."]}


# --- other fields --------------------------------------------------------------------------------------
def test_required_fields_and_limits_are_all_reported(us, agent):
    error = refuse("ERR_VALIDATION", addresses.create_return_address, agent, us.pk, phone="123",
                   warehouse="  ", contact_name="x" * 101, line1="1 Main St")
    assert set(error.fields) == {"warehouse", "contact_name", "city", "phone"}
    assert not ReturnAddress.objects.unscoped().exists()


def test_text_is_trimmed_and_optional_fields_default_to_blank(us, agent):
    address = add(agent, us, warehouse="  East  ", line2=None, region=" CA ", postcode=" 94105 ")
    address.refresh_from_db()
    assert (address.warehouse, address.line2, address.region, address.postcode) == ("East", "", "CA", "94105")


def test_unknown_fields_are_refused(us, agent):
    error = refuse("ERR_VALIDATION", add, agent, us, colour="red")
    assert error.fields == {"colour": ["Unknown field."]}
    address = add(agent, us)
    assert refuse("ERR_VALIDATION", addresses.update_return_address, agent, address.pk, is_default=False).fields \
        == {"is_default": ["Unknown field."]}


@pytest.mark.parametrize("market", ["US", "us", None])
def test_the_stores_own_market_is_accepted(us, agent, market):
    assert add(agent, us, market=market).market.code == "US"


@pytest.mark.parametrize("market", ["ID", "XX"])
def test_another_market_is_refused(us, agent, market):
    error = refuse("ERR_VALIDATION", add, agent, us, market=market)
    assert list(error.fields) == ["market"]


def test_update_revalidates_the_phone_and_keeps_the_rest(us, agent):
    address = add(agent, us)
    updated = addresses.update_return_address(agent, address.public_id, phone="(415) 555-2671", city=" Oakland ")
    updated.refresh_from_db()
    assert (updated.phone, updated.city, updated.warehouse) == ("+14155552671", "Oakland", "Main")
    refuse("ERR_LOG_501", addresses.update_return_address, agent, address.pk, phone="+62 812 3456 7890")
    refuse("ERR_VALIDATION", addresses.update_return_address, agent, address.pk, city="")
    updated.refresh_from_db()
    assert (updated.phone, updated.city) == ("+14155552671", "Oakland")


# --- one default per store and market ------------------------------------------------------------------
def test_the_first_address_becomes_the_default(us, agent):
    first = add(agent, us, warehouse="A")
    second = add(agent, us, warehouse="B")
    assert first.is_default and not second.is_default
    assert defaults(us) == ["A"]
    assert addresses.default_return_address(us) == first


def test_creating_a_new_default_unsets_the_old_one(us, agent):
    add(agent, us, warehouse="A")
    add(agent, us, warehouse="B", is_default=True)
    assert defaults(us) == ["B"]


def test_set_default_switches_in_one_step(us, agent):
    a1 = add(agent, us, warehouse="A")
    b1 = add(agent, us, warehouse="B")
    assert addresses.set_default_return_address(agent, b1.public_id).is_default
    assert defaults(us) == ["B"]
    addresses.set_default_return_address(agent, b1.pk)  # already the default: nothing changes
    assert defaults(us) == ["B"]
    addresses.set_default_return_address(agent, a1.pk)
    assert defaults(us) == ["A"]


def test_defaults_are_per_store(tenants, us, agent):
    other = store_in(tenants[0], "US")
    add(agent, us, warehouse="A")
    add(agent, other, warehouse="B")
    assert defaults(us) == ["A"] and defaults(other) == ["B"]


def test_deleting_the_default_promotes_the_oldest_remaining(us, agent):
    first = add(agent, us, warehouse="A")
    add(agent, us, warehouse="B")
    add(agent, us, warehouse="C")
    promoted = addresses.delete_return_address(agent, first.public_id)
    assert promoted.warehouse == "B" and defaults(us) == ["B"]
    c = ReturnAddress.objects.for_agency(us.agency_id).get(warehouse="C")
    assert addresses.delete_return_address(agent, c.pk) is None  # not the default: nothing moves
    assert defaults(us) == ["B"]
    assert addresses.delete_return_address(agent, promoted.pk) is None
    assert addresses.default_return_address(us) is None
    refuse("ERR_NOT_FOUND", addresses.delete_return_address, agent, promoted.pk)


def test_the_constraint_backs_up_the_default_rule(us, agent, monkeypatch):
    add(agent, us, warehouse="A")
    b = add(agent, us, warehouse="B")
    real = addresses._siblings
    # A writer that forgot to unset the old default: the database refuses the second one.
    monkeypatch.setattr(addresses, "_siblings", lambda obj, market_id: real(obj, market_id).none())
    error = refuse("ERR_VALIDATION", addresses.set_default_return_address, agent, b.pk)
    assert list(error.fields) == ["is_default"]
    monkeypatch.setattr(addresses, "_siblings", real)
    assert defaults(us) == ["A"]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_set_default_calls_at_once_leave_exactly_one_default():
    from tests.conftest import make_tenant

    tenant = make_tenant("address-race", n_stores=1)
    owner = tenant.actor(tenant.owner)
    store = tenant.stores[0]
    assert store.market.code == "AE"  # make_tenant puts the first store in the first market
    made = [addresses.create_return_address(owner, store.pk, phone="050 123 4567", **{**VALID, "warehouse": w})
            for w in ("A", "B", "C")]
    for _round in range(5):
        barrier = threading.Barrier(2)
        errors: list[Exception] = []

        def worker(address_id, barrier, errors):
            try:
                barrier.wait()
                addresses.set_default_return_address(owner, address_id)
            except Exception as exc:
                errors.append(exc)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=worker, args=(made[i].pk, barrier, errors)) for i in (1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert len(defaults(store)) == 1 and defaults(store)[0] in {"B", "C"}
        addresses.set_default_return_address(owner, made[0].pk)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_first_addresses_at_once_make_one_default():
    from tests.conftest import make_tenant

    tenant = make_tenant("address-first", n_stores=1)
    owner = tenant.actor(tenant.owner)
    store = tenant.stores[0]
    barrier = threading.Barrier(2)
    errors: list[Exception] = []

    def worker(name):
        try:
            barrier.wait()
            addresses.create_return_address(owner, store.pk, phone="050 123 4567", **{**VALID, "warehouse": name})
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("A", "B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert ReturnAddress.objects.for_agency(tenant.agency).count() == 2
    assert len(defaults(store)) == 1


# --- who may -------------------------------------------------------------------------------------------
def test_a_viewer_may_read_but_not_write(tenants, us, agent):
    a, _b = tenants
    viewer = a.actor(a.viewer)
    address = add(agent, us)
    refuse("ERR_PERM_003", add, viewer, us)
    refuse("ERR_PERM_003", addresses.update_return_address, viewer, address.pk, city="X")
    refuse("ERR_PERM_003", addresses.set_default_return_address, viewer, address.pk)
    refuse("ERR_PERM_003", addresses.delete_return_address, viewer, address.pk)
    assert list(addresses.return_addresses_for_actor(viewer, us)) == [address]
    address.refresh_from_db()
    assert address.city == "Springfield"


@pytest.mark.parametrize("who", ["outsider", "other_tenant", "agent_elsewhere"])
def test_invisible_stores_and_addresses_are_not_found(tenants, who):
    a, b = tenants
    owner = a.actor(a.owner)
    store = a.stores[2]  # the agent holds no role here
    address = addresses.create_return_address(owner, store.pk, phone="0812-3456-7890", **VALID)
    actor = {"outsider": a.actor(a.outsider), "other_tenant": b.actor(b.owner),
             "agent_elsewhere": a.actor(a.agent)}[who]
    refuse("ERR_NOT_FOUND", addresses.create_return_address, actor, store.pk, phone="0812-3456-7890", **VALID)
    refuse("ERR_NOT_FOUND", addresses.update_return_address, actor, address.public_id, city="X")
    refuse("ERR_NOT_FOUND", addresses.set_default_return_address, actor, address.public_id)
    refuse("ERR_NOT_FOUND", addresses.delete_return_address, actor, address.public_id)
    assert list(addresses.return_addresses_for_actor(actor)) == []
    assert ReturnAddress.objects.unscoped().count() == 1


def test_unknown_ids_are_not_found(agent):
    for bad in (uuid.uuid4(), "nope", 10**9):
        refuse("ERR_NOT_FOUND", addresses.create_return_address, agent, bad, phone="1", **VALID)
        refuse("ERR_NOT_FOUND", addresses.set_default_return_address, agent, bad)


def test_the_selector_filters_by_store_in_every_form(tenants, us, agent):
    a, b = tenants
    mine = add(agent, us)
    elsewhere = addresses.create_return_address(a.actor(a.owner), a.stores[0].pk, phone="050 123 4567", **VALID)
    addresses.create_return_address(b.actor(b.owner), b.stores[0].pk, phone="050 123 4567", **VALID)
    agent_sees = addresses.return_addresses_for_actor(agent)
    assert set(agent_sees) == {mine, elsewhere}
    for key in (us, us.pk, us.public_id, str(us.public_id)):
        assert list(addresses.return_addresses_for_actor(agent, key)) == [mine]
    assert list(addresses.return_addresses_for_actor(agent, "nope")) == []
    assert list(addresses.return_addresses_for_actor(agent, b.stores[0])) == []


def test_default_return_address_is_per_market_of_the_store(us, agent):
    address = add(agent, us)
    assert addresses.default_return_address(us) == address
    assert addresses.default_return_address(us, Market.objects.get(code="ID")) is None
