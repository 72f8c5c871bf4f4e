"""A source's language: an ISO 639 code from pycountry's list, named in the reader's language.

Stored as ISO 639-1's two letters where the language has them (`en`, `ko`, `zh`), else ISO 639-3's
three (`yue`, `fil`); blank when it is not known. A writer may give a code in any case, a tag with a
script or region (`ko-KR`, `zh_Hant_TW`: a source's language is what the statistics and filters
group by, and a region would split Korean in two again), the three letters of a language that has
two (`kor`, ISO 639-2's `chi`) or a two-letter code ISO 639-1 withdrew (`iw`): each is stored as the
one code. `und` (undetermined) is stored blank, the one way of saying "not known". A language's name
("Korean") is refused, naming its code: names are what the free field held, and a door that read
them would guess ("Chinese (Taiwan)").

pycountry (Debian's iso-codes) holds ISO 639-3, which includes ISO 639-1 and 639-2; Django's own
list of languages lacks `zh` (it has `zh-hans`) and `lo`, and most of the world's languages.
"""

import functools
import gettext as gettext_module
import re

import pycountry
from django.conf import global_settings, settings
from django.conf.locale import LANG_INFO
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator
from django.db import models
from django.utils import translation
from django.utils.translation import gettext, to_locale

LANGUAGE_HELP = (
    "ISO 639 language code: two letters where ISO 639-1 has them (en, ko, zh), else ISO 639-3's three (yue); "
    "blank if not known. Any case or a tag with a region is read as the code (EN, ko-KR: en, ko)."
)

LANGUAGE_CODE_MESSAGE = (
    "Give an ISO 639 language code: two letters where ISO 639-1 has them (en, ko, zh), "
    "else ISO 639-3's three (yue), or leave it blank if the language is not known."
)

# The codes ISO 639-1 withdrew for others, still met in old data and old software.
_WITHDRAWN = {"iw": "he", "in": "id", "ji": "yi", "jw": "jv", "mo": "ro"}

# Names of languages as this project's sources and analysts write them, that neither ISO 639-3 nor
# Django gives: Chinese in Chinese, Persian by its English exonym, Korean as North Korea names it.
_OTHER_NAMES = {"中文": "zh", "汉语": "zh", "漢語": "zh", "farsi": "fa", "조선어": "ko", "조선말": "ko", "한국말": "ko"}

# A language tag as people write them (BCP 47, POSIX locales): the language, then subtags for
# script, region or variant, by "-" or "_". Only the language is kept.
_TAG = re.compile(r"([a-z]{2,3})(?:[-_][a-z0-9]{1,8})*")

# What the stored value may look like, which the database checks (Source's `source_language_code`).
CODE_SHAPE = r"^[a-z]{2,3}$"


@functools.cache
def _code_of() -> dict[str, str]:
    """Every code a writer may give, lower case, to the code stored."""
    codes = {}
    for language in pycountry.languages:
        code = getattr(language, "alpha_2", language.alpha_3)
        for given in (code, language.alpha_3, getattr(language, "bibliographic", None)):
            if given:
                codes[given] = code
    codes.update(_WITHDRAWN)
    codes["und"] = ""
    return codes


@functools.cache
def _languages() -> dict[str, object]:
    """pycountry's language of each stored code."""
    return {getattr(language, "alpha_2", language.alpha_3): language for language in pycountry.languages}


def language_code(value: str) -> str:
    """`value` as stored: an ISO 639 code, lower case, two letters where there are two, or blank.
    Raises ValidationError saying what is accepted (and a name's code, for a language's name)."""
    text = value.strip().lower()
    if not text:
        return ""
    match = _TAG.fullmatch(text)
    code = _code_of().get(match.group(1)) if match else None
    if code is None:
        raise ValidationError(_refusal(value.strip()), code="not_a_language_code")
    return code


def _refusal(value: str) -> str:
    shown = value if len(value) <= 40 else f"{value[:40]}…"
    # A short text is more likely a mistyped code than a name ("e" names the language E, `eee`).
    named = language_named(value) if len(value) > 3 else None
    if named:
        return f"“{shown}” is a language's name; its code is {named}. {LANGUAGE_CODE_MESSAGE}"
    return f"“{shown}” is not a language code. {LANGUAGE_CODE_MESSAGE}"


@functools.cache
def _django_name() -> dict[str, str]:
    """Django's own names of the languages (`global_settings.LANGUAGES`), by the code stored: its
    catalogs translate them into every language the site may have."""
    return {tag: name for tag, name in global_settings.LANGUAGES if tag in _code_of()}


@functools.cache
def _iso_catalog(language: str) -> gettext_module.NullTranslations:
    """pycountry's translations of the ISO 639-3 names into `language` (Korean names 358 of them,
    the languages one meets), or none."""
    return gettext_module.translation(
        "iso639-3",
        pycountry.LOCALES_DIR,
        languages=[to_locale(language), language.split("-")[0]],
        fallback=True,
    )


def language_name(code: str) -> str:
    """The language `code` names, in the active language: Django's name where Django knows the
    language ("Greek", not ISO's "Modern Greek (1453-)"), translated by its catalogs, else ISO
    639-3's, translated by pycountry's, English where neither has it. `code` itself if it names
    no language (a value kept from before the codes, in a record's history)."""
    if code in _django_name():
        return gettext(_django_name()[code])
    language = _languages().get(code)
    if language is None:
        return code
    return _iso_catalog(translation.get_language() or settings.LANGUAGE_CODE).gettext(language.name)


def language_label(code: str) -> str:
    """The language and its code, "Korean (ko)", as the admin offers and shows them."""
    name = language_name(code)
    return code if name == code else f"{name} ({code})"


def _comparable(name: str) -> str:
    return " ".join(name.casefold().split())


@functools.cache
def _code_of_name() -> dict[str, str]:
    """Each language's names, as compared, to its code: ISO 639-3's English names, Django's, each
    language's own (Django's `name_local`: 한국어, 简体中文) and their translations into the site's
    languages (Korean). The first to claim a name keeps it."""
    names = dict(_OTHER_NAMES)
    for code, language in _languages().items():
        for name in (language.name, getattr(language, "inverted_name", None), getattr(language, "common_name", None)):
            if name:
                names.setdefault(_comparable(name), code)
    for tag, name in global_settings.LANGUAGES:
        code = _code_of().get(tag.split("-")[0])
        if code:
            names.setdefault(_comparable(name), code)
    for tag, info in LANG_INFO.items():
        code = _code_of().get(tag.split("-")[0])
        if code and info.get("name_local"):
            names.setdefault(_comparable(info["name_local"]), code)
    for site_language, _ in settings.LANGUAGES:
        with translation.override(site_language):
            for code in _languages():
                names.setdefault(_comparable(language_name(code)), code)
    names.pop("", None)
    return names


def language_named(text: str) -> str | None:
    """The code of the language `text` names ("Korean", "korean", "한국어", "Chinese (Simplified)"),
    or None. Names are not accepted as a language (`language_code`): they are read only to say the
    code in a refusal, and by the migration that turned the free field into codes (0073)."""
    names = _code_of_name()
    comparable = _comparable(text)
    if comparable in names:
        return names[comparable]
    # "Chinese (Simplified)", "English (UK)": the language before its qualifier.
    before_qualifier = comparable.split(" (")[0]
    return names.get(before_qualifier) if before_qualifier != comparable else None


@functools.cache
def _offered(language: str) -> list[tuple[str, str, str]]:
    """Every language as the admin's autocomplete offers it in `language`: (code, label, the
    English name and the label as searched), by name."""
    offered = []
    with translation.override("en"):
        english = {code: language_name(code) for code in _languages()}
    with translation.override(language):
        for code in _languages():
            label = language_label(code)
            offered.append((code, label, f"{english[code]} {label}".casefold()))
    return sorted(offered, key=lambda item: item[1].casefold())


def languages_matching(term: str) -> list[tuple[str, str]]:
    """The languages whose code, English name or name in the active language holds `term`, as
    (code, label): the one whose code it is first, then those whose name starts with it."""
    term = _comparable(term)
    offered = _offered(translation.get_language() or settings.LANGUAGE_CODE)
    if not term:
        return [(code, label) for code, label, _ in offered]
    found = [item for item in offered if term in item[2] or item[0] == term]

    def rank(item):
        code, label, searched = item
        # The language whose code it is, then those whose name starts with it, the languages of
        # ISO 639-1 (two letters: those sources are mostly written in) before the others.
        return (code != term, not (label.casefold().startswith(term) or searched.startswith(term)), len(code))

    return [(code, label) for code, label, _ in sorted(found, key=rank)]


def validate_language_code(value: str) -> None:
    """Refuses what `language_code` cannot read as a language, saying what is accepted."""
    language_code(value)


class LanguageCodeField(models.CharField):
    """A language as an ISO 639 code (`language_code`): every door's value is read by `to_python`
    in the model's validation (`full_clean()`), so "EN" is stored "en", and "Klingon" is refused by
    the validator, naming the field, alike in the admin and the API. The API's serializer runs the
    validator on the value as sent, which it accepts in every form `language_code` reads.

    `to_python` leaves a value it cannot read as it is, for the validator to refuse: loading the
    history's copies (pghistory's event table, `loaddata`) keeps the free text written before the
    codes. The column stays 16 characters wide for those copies; the value stored is three at
    most (the constraint)."""

    default_validators = [validate_language_code]

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_length", 16)
        kwargs.setdefault("blank", True)
        super().__init__(*args, **kwargs)
        # What the validator accepts is three letters at most once read: the column's limit would only
        # add a second message to its refusal of a long text.
        self.validators[:] = [each for each in self.validators if not isinstance(each, MaxLengthValidator)]

    def to_python(self, value):
        value = super().to_python(value)
        try:
            return language_code(value) if value else value
        except ValidationError:
            return value

    def formfield(self, **kwargs):
        # A tag longer than the column ("zh-Hant-TW-x-…") is still read as its language.
        return super().formfield(**{"max_length": None, **kwargs})
