"""The 11 markets (站点): the seed data of the Market table and their translated names."""

from django.utils.translation import gettext_lazy as _

# code, ISO country, currency, IANA time zone, languages, region
MARKETS = [
    ("US", "US", "USD", "America/Los_Angeles", ["en", "es"], "NA"),
    ("UK", "GB", "GBP", "Europe/London", ["en"], "EU"),
    ("CA", "CA", "CAD", "America/Toronto", ["en", "fr"], "NA"),
    ("MY", "MY", "MYR", "Asia/Kuala_Lumpur", ["ms", "en", "zh"], "SEA"),
    ("TH", "TH", "THB", "Asia/Bangkok", ["th"], "SEA"),
    ("VN", "VN", "VND", "Asia/Ho_Chi_Minh", ["vi"], "SEA"),
    ("PH", "PH", "PHP", "Asia/Manila", ["en", "fil"], "SEA"),
    ("SG", "SG", "SGD", "Asia/Singapore", ["en", "zh", "ms"], "SEA"),
    ("ID", "ID", "IDR", "Asia/Jakarta", ["id"], "SEA"),
    ("SA", "SA", "SAR", "Asia/Riyadh", ["ar", "en"], "ME"),
    ("AE", "AE", "AED", "Asia/Dubai", ["ar", "en"], "ME"),
]

MARKET_NAMES = {
    "US": _("United States"),
    "UK": _("United Kingdom"),
    "CA": _("Canada"),
    "MY": _("Malaysia"),
    "TH": _("Thailand"),
    "VN": _("Vietnam"),
    "PH": _("Philippines"),
    "SG": _("Singapore"),
    "ID": _("Indonesia"),
    "SA": _("Saudi Arabia"),
    "AE": _("United Arab Emirates"),
}
