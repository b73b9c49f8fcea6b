"""zh-hans ships complete, and the compiled catalogue matches its source."""

from pathlib import Path

import polib

LOCALE = Path(__file__).resolve().parent.parent / "config" / "locale"


def test_zh_hans_is_complete():
    po = polib.pofile(str(LOCALE / "zh_Hans" / "LC_MESSAGES" / "django.po"))
    assert len(po) > 50
    assert po.untranslated_entries() == []
    assert po.fuzzy_entries() == []


def test_compiled_catalogue_matches_source():
    po = polib.pofile(str(LOCALE / "zh_Hans" / "LC_MESSAGES" / "django.po"))
    mo = polib.mofile(str(LOCALE / "zh_Hans" / "LC_MESSAGES" / "django.mo"))
    compiled = {(e.msgctxt, e.msgid): e.msgstr for e in mo}
    for entry in po.translated_entries():
        if entry.msgid_plural:
            continue
        assert compiled.get((entry.msgctxt, entry.msgid)) == entry.msgstr, entry.msgid


def test_every_catalogue_code_is_translated():
    from django.utils.translation import override

    from stores.errors import CATALOGUE

    for entry in CATALOGUE.values():
        with override("zh-hans"):
            zh = str(entry.message), str(entry.hint)
        with override("en"):
            en = str(entry.message), str(entry.hint)
        assert zh[0] != en[0] and zh[1] != en[1], entry.code
