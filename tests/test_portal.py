"""Portal sign-in (zh-hans and en), lock-out with cool-off, store list and switcher."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.utils import timezone

PASSWORD = "pw-for-tests-1"


def login(client, username, password=PASSWORD, **extra):
    return client.post("/login/", {"username": username, "password": password}, **extra)


def test_login_page_in_both_languages(client, db):
    assert "Sign in" in client.get("/login/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "登录" in client.get("/login/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()


def test_language_switch_is_remembered(client, db):
    client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/login/"})
    assert "登录" in client.get("/login/").content.decode()


def test_home_requires_login(client, db):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_agent_signs_in_and_sees_granted_stores(client, tenants):
    a, b = tenants
    response = login(client, "alpha-agent")
    assert response.status_code == 302
    page = client.get("/").content.decode()
    assert a.stores[0].name in page and a.stores[1].name in page
    assert a.stores[2].name not in page
    assert not any(s.name in page for s in b.stores)


def test_store_switcher_survives_navigation(client, tenants):
    a, b = tenants
    login(client, "alpha-owner")
    client.get(f"/?store={a.stores[1].public_id}")
    page = client.get("/").content.decode()
    assert f'value="{a.stores[1].public_id}" selected' in page
    # A foreign store id is ignored (never confirms it exists): back to all stores.
    client.get(f"/?store={b.stores[0].public_id}")
    assert "selected" not in client.get("/").content.decode().split("<table")[0].split("All stores")[1][:200]


def test_lockout_after_repeated_failures_then_cool_off(client, tenants, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login(client, "alpha-agent", "wrong").status_code == 200
    locked = login(client, "alpha-agent", "wrong")
    assert locked.status_code == 429
    assert "ERR_AUTH_003" in locked.content.decode()
    # Even the right password is refused while locked.
    assert login(client, "alpha-agent").status_code == 429
    # After the cool-off the account opens again.
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(hours=2))
    assert login(client, "alpha-agent").status_code == 302


@pytest.mark.parametrize("lang,text", [("en", "Log out"), ("zh-hans", "退出登录")])
def test_logout_in_both_languages(client, tenants, lang, text):
    login(client, "alpha-owner")
    assert text in client.get("/", HTTP_ACCEPT_LANGUAGE=lang).content.decode()
    client.post("/logout/")
    assert client.get("/").status_code == 302


def test_member_of_no_agency_sees_the_coded_error(client, db):
    from tests.factories import UserFactory

    UserFactory(username="drifter")
    login(client, "drifter")
    response = client.get("/")
    assert response.status_code == 403 and "ERR_AUTH_004" in response.content.decode()


def test_admin_lists_tenancy_models(admin_client, tenants):
    for path in ("agency", "market", "store", "membership", "role", "roleassignment", "apitoken"):
        assert admin_client.get(f"/admin/stores/{path}/").status_code == 200, path
    a, _b = tenants
    store = a.stores[0]
    # guardian's object-permission admin on Store
    assert admin_client.get(f"/admin/stores/store/{store.pk}/permissions/").status_code == 200
