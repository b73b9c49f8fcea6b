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
