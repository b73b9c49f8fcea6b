"""Seed the market-less sensitive words (敏感词): contact details, off-platform deals, review-for-reward.

Patterns are case-insensitive regular expressions (aftersales.replies compiles them with IGNORECASE and
checks NFKC-normalised text). They are written to avoid the common false positives of customer-service
text: dates and times, 16+ digit order ids, decimal amounts, and "line"/"vx"/"qq" inside longer words.
The reverse removes exactly these (kind, value) pairs without a market; rows added by hand stay.
"""

from django.db import migrations

# Separators a phone number may contain between digits.
_SEP = r"[\s()-]"
# Before a phone number: not a digit/letter (an id), nor a dot, colon, slash or hyphen (amount, time, path).
_PHONE_START = r"(?<![0-9A-Za-z.:/_-])"
_PHONE_END = r"(?![0-9A-Za-z:])"
# A URL ends at white space, punctuation or CJK text (NFKC has already made "，" a ",").
_URL_TAIL = r"[^\s<>\"',!?;)\]}，。！？；、）】\u3000-\u9fff]+"

PATTERNS = [
    # 9 to 15 digits, optionally "+" and separators; not a date like 2026-11-05 (whose time would follow).
    (_PHONE_START + r"(?!(?:19|20)\d{2}[-/.]\d{1,2}[-/.]\d{1,2})\+?\(?\d(?:" + _SEP + r"{0,2}\d){8,14}"
     + _PHONE_END, "phone number"),
    (r"(?<!\d)1[3-9]\d[\s-]?\d{4}[\s-]?\d{4}(?!\d)", "Chinese mobile number"),
    (r"微信|weixin|we\s*chat|(?<![a-z])(?:vx|wx)(?![a-z])|v信", "WeChat"),
    (r"whats\s*app|(?<![a-z])wa\.me/", "WhatsApp"),
    (r"(?<![a-z])line\s*(?:id(?![a-z])|[:：@])|(?<![a-z])line\.me/", "LINE ID"),
    (r"telegram|(?<![a-z])t\.me/|(?<![a-z])tg\s*[:：@]", "Telegram"),
    (r"https?://" + _URL_TAIL, "URL"),
    (r"(?<![a-z0-9@.])www\." + _URL_TAIL, "URL"),
    (r"(?<![a-z0-9@._-])[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|net|org|cn|io|me|shop|store|top|xyz|link|ly)"
     r"(?![a-z0-9-])", "web address"),
    (r"[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}", "e-mail address"),
    (r"(?<![a-z])qq(?![a-z])|扣扣|企鹅号", "QQ"),
]

WORDS = [
    ("好评返现", "review for reward"),
    ("返现", "review for reward"),
    ("晒图返现", "review for reward"),
    ("好评有礼", "review for reward"),
    ("五星好评", "review for reward"),
    ("cash back for review", "review for reward"),
    ("加我", "contact off the platform"),
    ("私下交易", "off-platform deal"),
    ("线下交易", "off-platform deal"),
    ("银行转账", "off-platform payment"),
    ("pay outside", "off-platform payment"),
    ("bank transfer", "off-platform payment"),
]

SEED = [("pattern", value, label) for value, label in PATTERNS] + [("word", value, label) for value, label in WORDS]


def seed(apps, schema_editor):
    SensitiveWord = apps.get_model("aftersales", "SensitiveWord")
    for kind, value, label in SEED:
        SensitiveWord.objects.get_or_create(market=None, kind=kind, value=value,
                                            defaults={"label": label, "is_active": True})


def unseed(apps, schema_editor):
    SensitiveWord = apps.get_model("aftersales", "SensitiveWord")
    for kind, value, _label in SEED:
        SensitiveWord.objects.filter(market=None, kind=kind, value=value).delete()


class Migration(migrations.Migration):
    dependencies = [("aftersales", "0002_oplog_append_only")]
    operations = [migrations.RunPython(seed, unseed)]
