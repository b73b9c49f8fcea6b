"""Seed the carrier registry. Patterns for carriers without a published check digit are heuristics:
they are data, editable in admin, and a carrier with no known format accepts numbers as unverified."""

from django.db import migrations

S10 = "s10"
PKG = "package"
PAT = "pattern"
NONE = "none"
S10_HINT = "UPU S10: 2 letters, 8 digits, a check digit, country code (e.g. RB123456785GB)"
ALL = ["US", "UK", "CA", "MY", "TH", "VN", "PH", "SG", "ID", "SA", "AE"]

# code, name, markets, check, package couriers, pattern, hint, aftership slug
CARRIERS = [
    ("usps", "USPS", ["US"], PKG, ["usps"], "", "20–22 digits (e.g. 9400 1118 9922 3197 4284 97), or S10", "usps"),
    ("ups", "UPS", ["US", "CA", "UK"], PKG, ["ups"], "", "1Z followed by 16 letters and digits", "ups"),
    ("fedex", "FedEx", ["US", "CA"], PKG, ["fedex"], "", "12, 15, 20 or 22 digits", "fedex"),
    ("dhl", "DHL Express", ALL, PKG, ["dhl"], "", "10 digits (DHL Express waybill)", "dhl"),
    ("royal-mail", "Royal Mail", ["UK"], S10, [], "", S10_HINT, "royal-mail"),
    ("canada-post", "Canada Post", ["CA"], S10, [], r"\d{16}", "16 digits, or S10 for international items",
     "canada-post"),
    ("jt-express", "J&T Express", ["MY", "TH", "VN", "PH", "SG", "ID", "SA", "AE"], PAT, [],
     r"(JP|JX|JD|JT)?\d{10,15}", "10–15 digits, optionally starting JP/JX/JD/JT", "jtexpress"),
    ("ninja-van", "Ninja Van", ["MY", "TH", "VN", "PH", "SG", "ID"], PAT, [], r"NV[A-Z]{2}[A-Z0-9]{8,18}",
     "NV + country code + 8–18 letters or digits (e.g. NVSGABC1234567890)", "ninjavan"),
    ("flash", "Flash Express", ["TH", "MY", "PH"], PAT, [], r"(TH|MY|PH)\d{8,13}[A-Z]?",
     "Country code + 8–13 digits (e.g. TH0112345678901)", "flashexpress"),
    ("kerry", "Kerry Express", ["TH", "VN", "MY"], PAT, [], r"[A-Z]{3,5}\d{8,13}",
     "3–5 letters + 8–13 digits (e.g. KERDO123456789)", "kerry-logistics"),
    ("spx", "SPX Express", ["MY", "TH", "VN", "PH", "SG", "ID"], PAT, [], r"SPX[A-Z]{2}\d{9,14}[A-Z]?",
     "SPX + country code + 9–14 digits (e.g. SPXID012345678901)", "spx"),
    ("ghn", "Giao Hàng Nhanh (GHN)", ["VN"], PAT, [], r"[A-Z0-9]{8,12}", "GHN order code: 8–12 letters or digits",
     "ghn"),
    ("jne", "JNE", ["ID"], PAT, [], r"\d{12,16}|[A-Z]{3}\d{9,13}", "12–16 digits, or 3 letters + 9–13 digits", "jne"),
    ("sicepat", "SiCepat", ["ID"], PAT, [], r"\d{12}", "12 digits (e.g. 001234567890)", "sicepat"),
    ("lbc", "LBC Express", ["PH"], PAT, [], r"\d{10,15}", "10–15 digits", "lbcexpress"),
    ("pos-malaysia", "Pos Malaysia", ["MY"], S10, [], "", S10_HINT, "malaysia-post"),
    ("thailand-post", "Thailand Post", ["TH"], S10, [], "", S10_HINT, "thailand-post"),
    ("vietnam-post", "Vietnam Post", ["VN"], S10, [], "", S10_HINT, "vnpost"),
    ("phlpost", "PHLPost", ["PH"], S10, [], "", S10_HINT, "phlpost"),
    ("singpost", "SingPost", ["SG"], S10, [], "", S10_HINT, "singapore-post"),
    ("pos-indonesia", "Pos Indonesia", ["ID"], S10, [], "", S10_HINT, "pos-indonesia"),
    ("aramex", "Aramex", ["SA", "AE"], PAT, [], r"\d{10,12}", "10–12 digits", "aramex"),
    ("smsa", "SMSA Express", ["SA", "AE"], PAT, [], r"\d{10,12}", "10–12 digits (AWB)", "smsa-express"),
    ("spl", "SPL (Saudi Post)", ["SA"], S10, [], "", S10_HINT, "saudi-post"),
    ("emirates-post", "Emirates Post", ["AE"], S10, [], "", S10_HINT, "emirates-post"),
    ("other", "Other local courier", ALL, NONE, [], "", "", ""),
]


def seed(apps, schema_editor):
    Carrier = apps.get_model("logistics", "Carrier")
    for code, name, markets, check, couriers, pattern, hint, slug in CARRIERS:
        Carrier.objects.update_or_create(code=code, defaults={
            "name": name, "markets": markets, "format_check": check, "package_couriers": couriers,
            "pattern": pattern, "format_hint": hint, "aftership_slug": slug,
            "strip_prefixes": ["TRK:", "TRACKING:", "NO:", "#"],
        })


def unseed(apps, schema_editor):
    apps.get_model("logistics", "Carrier").objects.filter(code__in=[c[0] for c in CARRIERS]).delete()


class Migration(migrations.Migration):
    dependencies = [("logistics", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
