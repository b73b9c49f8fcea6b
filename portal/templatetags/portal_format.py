"""Presentation filters of the portal (formatting only)."""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django import template

register = template.Library()

CENT = Decimal("0.01")


@register.filter
def money(amount, currency: str = "") -> str:
    """``GBP 25.00``: always the currency code and two decimals (DESIGN: money is Decimal with its currency).
    Thousands are grouped (``VND 1,250,000.00``) so large amounts stay readable."""
    if amount is None or amount == "":
        return ""
    try:
        value = Decimal(str(amount)).quantize(CENT, rounding=ROUND_HALF_UP)
    except (InvalidOperation, ValueError):
        return ""
    text = f"{value:,.2f}"
    return f"{currency} {text}" if currency else text


@register.filter
def role_label(role) -> str:
    """A role created from a template and never renamed reads in today's language (its stored name is the
    template's English one); a renamed or agency-made role shows its own name."""
    from django.utils import translation

    from stores.permissions import ROLE_TEMPLATES

    entry = ROLE_TEMPLATES.get(getattr(role, "slug", ""))
    if entry is None:
        return role.name
    with translation.override("en"):
        english = str(entry[0])
    return str(entry[0]) if role.name == english else role.name
