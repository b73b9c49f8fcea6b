import factory
from django.contrib.auth import get_user_model

from stores.models import Agency, Market, Store


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw-for-tests-1")


class AgencyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Agency
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"agency-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())


class StoreFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Store

    agency = factory.SubFactory(AgencyFactory)
    market = factory.LazyFunction(lambda: Market.objects.get(code="US"))
    name = factory.Sequence(lambda n: f"Store {n:03d}")
    shop_id = factory.Sequence(lambda n: f"shop-{n}")
    business_licence_verified = True
    legal_person_id_verified = True
    bank_account_verified = True
    phone_bound = True
