"""One-line text: titles and names, which every door (the admin, the API, the CSV import) takes
through the model's validation, and lists of names, which the admin edits one name per line.

A browser's one-line box drops the line breaks of the value it is given, so a title stored with
one ("About 500\\nreturned", pasted from a page or quoted in a CSV cell) was saved back glued
("About 500returned") by the next admin Save of any other field. A one-line field therefore
refuses line breaks and the other control characters (tabs, U+0001…, U+0085) at every door, and
the database refuses them too (`OneLineConstraint`); migration 0089 replaced those stored before
by a space.

A list of names holds at most NAMES_MAX of them (`NamesCountValidator`, and `NamesCountConstraint`
in the database): unbounded, one record's list grew every search document, list and release row that
names it."""

import re
import unicodedata
from urllib.parse import urlsplit

from django import forms
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.forms import SimpleArrayField
from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS
from django.db.models import CharField, CheckConstraint, F, Func, IntegerField, Q, TextField, Transform, URLField, Value
from django.db.models.lookups import LessThanOrEqual, Regex
from django.utils.deconstruct import deconstructible

# Control characters (C0, DEL, C1: line feed, carriage return, tab, U+0085…) and the Unicode line
# and paragraph separators. Written so that Python's `re` and PostgreSQL's regular expressions
# read it alike: the database constraint uses the same pattern.
NOT_ONE_LINE_PATTERN = r"[\x01-\x1f\x7f-\x9f\u2028\u2029]"
_NOT_ONE_LINE = re.compile(NOT_ONE_LINE_PATTERN)
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")

# The most names a list of names holds (a place's other names, an organization's aliases): the
# longest list in the demo data and the sample fixture holds a handful.
NAMES_MAX = 100


@deconstructible
class OneLineValidator:
    """Refuses a value holding a line break or another control character, naming the field
    (`what`, as a sentence starts: "A title", "An other name")."""

    code = "not_one_line"

    def __init__(self, what: str):
        self.what = what

    def __call__(self, value: str) -> None:
        found = _NOT_ONE_LINE.search(value)
        if found is None:
            return
        if found.group() in _LINE_BREAKS:
            message = "%(what)s is one line: remove the line break."
        else:
            message = "%(what)s is one line of text: remove the control character %(character)s."
        raise ValidationError(
            message, code=self.code, params={"what": self.what, "character": f"U+{ord(found.group()):04X}"}
        )

    def __eq__(self, other):
        return isinstance(other, OneLineValidator) and self.what == other.what


def validate_port(value: str) -> None:
    """Refuses a web address whose port no address has: Django's URLValidator takes any five
    digits (`http://example.org:99999/`), which Python's `urlsplit` then refuses to read, a 500
    wherever the address was compared (a new source's lookalikes, at every door)."""
    try:
        urlsplit(value).port  # noqa: B018 (read to know it can be)
    except ValueError:
        raise ValidationError(
            "Enter an address whose port, if it gives one, is a number from 0 to 65535.", code="invalid_port"
        ) from None


def one_line_condition(field_name: str, *, items: bool = False) -> Q:
    """The database's side of `OneLineValidator`: a text column or, with `items`, a list of names
    (`NameListField`), its items joined, holding no line break or control character."""
    column = F(field_name)
    if items:
        column = Func(column, Value(" "), function="array_to_string", output_field=TextField())
    return ~Q(Regex(column, NOT_ONE_LINE_PATTERN))


class FieldValidatorConstraint(CheckConstraint):
    """A CheckConstraint that the database holds to and a model's validation leaves to a validator
    of the field: that one refuses the same values naming the field, where this would send one more
    query per save to say less."""

    def validate(self, model, instance, exclude=None, using=DEFAULT_DB_ALIAS):
        return None


class OneLineConstraint(FieldValidatorConstraint):
    """A one-line field's constraint (`one_line_condition`); its validator is `OneLineValidator`."""


@deconstructible
class NamesCountValidator:
    """Refuses a list of more than NAMES_MAX names, naming the field (`what`: "other names")."""

    code = "too_many_names"

    def __init__(self, what: str):
        self.what = what

    def __call__(self, value: list[str]) -> None:
        if len(value) > NAMES_MAX:
            raise ValidationError(
                "At most %(limit)d %(what)s; this list has %(count)d. Keep the names readers search by.",
                code=self.code,
                params={"limit": NAMES_MAX, "what": self.what, "count": len(value)},
            )

    def __eq__(self, other):
        return isinstance(other, NamesCountValidator) and self.what == other.what


def names_count_condition(field_name: str) -> Q:
    """The database's side of `NamesCountValidator`: at most NAMES_MAX items in the list."""
    return Q(LessThanOrEqual(Func(F(field_name), function="cardinality", output_field=IntegerField()), NAMES_MAX))


class NamesCountConstraint(FieldValidatorConstraint):
    """A list of names' constraint (`names_count_condition`); its validator is `NamesCountValidator`."""


class OneNamePerLineField(SimpleArrayField):
    """A list of names typed one per line: a name may hold a comma ("온성, 함경북도"), which the
    default comma-separated box split in two on an unchanged Save. Each line is trimmed and blank
    lines are dropped, as a form trims a one-line box."""

    widget = forms.Textarea(attrs={"rows": 4})

    def __init__(self, base_field, **kwargs):
        super().__init__(base_field, delimiter="\n", **kwargs)

    def to_python(self, value):
        if isinstance(value, str):
            value = "\n".join(line.strip() for line in value.splitlines() if line.strip())
        return super().to_python(value)


class NameListField(ArrayField):
    """A list of one-line names (a place's other names, an organization's aliases), which forms
    edit one name per line (`OneNamePerLineField`); the API and the CSV take it as a list."""

    def formfield(self, **kwargs):
        return super().formfield(**{"form_class": OneNamePerLineField, **kwargs})


class CompatibilityForm(Transform):
    """`name__nfkc__icontains=…`: a text, or a list of names, as the admin's lookups compare it, in
    Unicode's compatibility normal form (NFKC), given a term in that form too (`compatibility_form`).
    Texts are stored as written, so "UNHCR" typed in a Chinese or Japanese keyboard's full-width
    mode found no "UNHCR" in a list's search or an autocomplete, which then offered to add a second
    one; nor "UNHCR" the one stored so, nor half-width "ﾀﾞﾝﾄﾞﾝ" the full-width "ダンドン". The
    incidents' search reads words so already (`incidents.search`). PostgreSQL's NORMALIZE is
    immutable: the trigram indexes of the lists' searches are of this form (`substring_search_index`)."""

    lookup_name = "nfkc"
    template = "NORMALIZE((%(expressions)s)::text, NFKC)"
    output_field = TextField()


CharField.register_lookup(CompatibilityForm)
TextField.register_lookup(CompatibilityForm)
NameListField.register_lookup(CompatibilityForm)


def compatibility_form(text: str) -> str:
    """A typed term as `CompatibilityForm` compares it."""
    return unicodedata.normalize("NFKC", text)


# Format characters, invisible, that lead or trail a name pasted from a page or a PDF: a byte order
# mark, zero-width spaces and joiners, directional marks, a soft hyphen (migration 0112 trims the
# same in SQL); and the Hangul fillers (U+3164, half-width U+FFA0), letters that draw nothing, which
# a Korean chat's blank nicknames are made of (not the jamo fillers U+115F and U+1160, parts of an
# old Hangul syllable).
_INVISIBLE = frozenset("\u00ad\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff\u3164\uffa0")
# The directional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) that a chat or a
# word processor wraps a copied name in: "Daily NK" pasted with a trailing U+2069 was a second
# organization that every list showed as "Daily NK". Trimmed at the ends only of a text that holds
# none inside: the U+202C that closes an override opened inside the text keeps it from running on
# into what follows the text (a spreadsheet's next cell, a line of the admin).
_DIRECTIONAL = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# The spaces a one-line text is written with the plain space for: the no-break spaces a page or a
# PDF puts between words (U+00A0, the narrow U+202F of French typography, the figure space U+2007)
# and the typographic ones of set widths (U+2000-U+200A, U+205F). Each looks like a space, so
# "Daily NK" pasted with one was a second organization of the same look, a place the import did
# not find by its typed name. At a text's ends they are trimmed, as the invisible characters are.
# Not the ideographic space U+3000, as wide as a Hangul syllable.
_SPACES_NOT_PLAIN = "\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f"
_PLAIN_SPACE = str.maketrans(dict.fromkeys(_SPACES_NOT_PLAIN, " "))
_NOT_PLAIN_SPACES = frozenset(_SPACES_NOT_PLAIN)
_INVISIBLE_OR_DIRECTIONAL = _INVISIBLE | _DIRECTIONAL

# Invisible characters found inside a word in text pasted from a PDF or a page (a soft hyphen, a
# zero-width space, a word joiner, a byte order mark), which PostgreSQL's parser took for a break
# between two words: left out of the search's words (search.py, migration 0119), and out of a
# one-line text, where "Daily\u200bNK" was a second organization beside "DailyNK", "Daily\u00adNK"
# one beside "Daily NK" that read the same on one line. Not the zero-width (non-)joiners, which
# part or join a Persian or Indic word as its writer meant, or make an emoji of several.
INVISIBLE_IN_WORDS = "\u00ad\u200b\u2060\ufeff"
# The letters of the scripts written without spaces between words (Thai, Lao, Tibetan, Myanmar,
# Khmer), whose words a zero-width space parts, as Unicode means it: beside one of them it is a
# break between two words, not one inside a word (the same as migration 0119's), which the search
# reads as a space and a one-line text keeps.
UNSPACED_LETTERS = "\u0e00-\u0eff\u0f00-\u0fff\u1000-\u109f\u1780-\u17ff\u19e0-\u19ff"
UNSPACED_BREAK = re.compile(f"(?<=[{UNSPACED_LETTERS}])\u200b|\u200b(?=[{UNSPACED_LETTERS}])")
# What a one-line text leaves out inside it (the same as migration 0123's).
_INVISIBLE_INSIDE = re.compile(f"(?<![{UNSPACED_LETTERS}])\u200b(?![{UNSPACED_LETTERS}])|[\u00ad\u2060\ufeff]")
# The left-to-right and right-to-left overrides (U+202D, U+202E) draw the text after them in the
# order they say, whatever its letters' own: "Detention of \u202egnp.exe" read "Detention of
# exe.png" on every page, list and export, and a name could pass for another. In a one-line text
# each is the embedding of its direction (U+202A, U+202B), which sets the text after it apart in
# that direction as the override did (a Hebrew or Arabic name among Latin words) but draws its
# letters in their own order, and is closed by the same U+202C (migration 0123 wrote those stored).
_OVERRIDES_EMBEDDED = str.maketrans({"\u202d": "\u202a", "\u202e": "\u202b"})


def _invisible_ends_trimmed(value: str) -> str:
    """`value` without the invisible characters and the spaces other than the plain one at its ends
    (`_ends_trimmed`), and without the directional controls there too when it holds none inside
    (`_DIRECTIONAL`)."""
    trimmed = _ends_trimmed(value, _INVISIBLE_OR_DIRECTIONAL)
    return trimmed if _DIRECTIONAL.isdisjoint(trimmed) else _ends_trimmed(value, _INVISIBLE)


def _ends_trimmed(value: str, invisible: frozenset[str]) -> str:
    """`value` without the run of spaces and `invisible` characters at either end that holds one of
    them or a space other than the plain one. Only then: a text stored with plain spaces around it
    keeps them (`services._stored_spaces_kept`). A walk from each end, not a regular expression,
    which tried each space of a long run in turn: seconds for a description of 40,000 spaces."""
    start, end = 0, len(value)
    while start < end and (value[start].isspace() or value[start] in invisible):
        start += 1
    if invisible.isdisjoint(value[:start]) and _NOT_PLAIN_SPACES.isdisjoint(value[:start]):
        start = 0
    while end > start and (value[end - 1].isspace() or value[end - 1] in invisible):
        end -= 1
    if invisible.isdisjoint(value[end:]) and _NOT_PLAIN_SPACES.isdisjoint(value[end:]):
        end = len(value)
    return value[start:end]


# CR LF (Windows, and every browser's form submission) and a lone CR (old Mac files).
_CARRIAGE_RETURN_BREAKS = re.compile(r"\r\n?")


def normal_text(value: str, *, one_line: bool) -> str:
    """`value` in Unicode's composed form (NFC), its line breaks as LF, and for a one-line text
    its spaces plain (`_PLAIN_SPACE`), its direction overrides embeddings (`_OVERRIDES_EMBEDDED`),
    without invisible characters at its ends, nor inside it those that hide inside words
    (`INVISIBLE_IN_WORDS`: a zero-width space that parts two words of Thai or Khmer stays,
    `UNSPACED_LETTERS`). The same name
    typed on one keyboard and pasted from a macOS file or a PDF (decomposed: Hangul as its letters,
    an accent as a mark after its letter), or with a zero-width space after it or a no-break space
    inside, looks the same everywhere and compared as another: a second
    organization or place of one name, a source not found to look like another, a word not found
    by the search, a file's name not found by the import. A browser sends every line break of a
    textarea as CR LF (HTML's form submission), where the API and the import wrote LF: an unchanged
    Save of a description with a line break was a change (a new version, a history event whose two
    values read the same, a revision to decide)."""
    value = unicodedata.normalize("NFC", _CARRIAGE_RETURN_BREAKS.sub("\n", value))
    if not one_line:
        return value
    trimmed = _invisible_ends_trimmed(value)
    return _INVISIBLE_INSIDE.sub("", trimmed.translate(_PLAIN_SPACE).translate(_OVERRIDES_EMBEDDED))


def _is_one_line(field) -> bool:
    return any(isinstance(validator, OneLineValidator) for validator in field.validators)


class TextInNormalForm:
    """A model whose texts are written in normal form (`normal_text`): its validation, which every
    door runs before writing (`full_clean()`: the services, the admin's forms, the API, the import),
    puts them so first, and its constraints then compare them so. Migration 0112 put those
    stored before so."""

    def clean_fields(self, exclude=None):
        # A text its writer sent back as read stays as stored (`services._stored_spaces_kept`): a
        # write of what was read is no change, whatever form a text was stored in before.
        kept = getattr(self, "_texts_as_stored", ())
        for field in self._meta.concrete_fields:
            if (exclude and field.name in exclude) or getattr(field, "generated", False) or not field.editable:
                continue
            if field.attname not in kept:
                setattr(self, field.attname, normal_value(field, getattr(self, field.attname)))
        super().clean_fields(exclude)


def normal_value(field, value):
    """`value` of the model field `field` as TextInNormalForm writes it: a text, or a list of
    names, in normal form (`normal_text`); anything else as it is. For the doors that validate
    without `clean_fields()` (the import's `services._FieldValues`)."""
    # A web address as sent: a server may tell its composed and decomposed paths apart.
    if isinstance(field, URLField):
        return value
    if isinstance(value, str):
        return normal_text(value, one_line=_is_one_line(field))
    if isinstance(value, list) and isinstance(field, ArrayField):
        one_line = _is_one_line(field.base_field)
        return [normal_text(item, one_line=one_line) if isinstance(item, str) else item for item in value]
    return value
