"""One-line text: titles and names, which every door (the admin, the API, the CSV import) takes
through the model's validation, and lists of names, which the admin edits one name per line.

A browser's one-line box drops the line breaks of the value it is given, so a title stored with
one ("About 500\\nreturned", pasted from a page or quoted in a CSV cell) was saved back glued
("About 500returned") by the next admin Save of any other field. A one-line field therefore
refuses line breaks and the other control characters (tabs, U+0001…, U+0085) at every door, and
the database refuses them too (`OneLineConstraint`); migration 0089 replaced those stored before
by a space."""

import re

from django import forms
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.forms import SimpleArrayField
from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS
from django.db.models import CheckConstraint, F, Func, Q, TextField, Value
from django.db.models.lookups import Regex
from django.utils.deconstruct import deconstructible

# Control characters (C0, DEL, C1: line feed, carriage return, tab, U+0085…) and the Unicode line
# and paragraph separators. Written so that Python's `re` and PostgreSQL's regular expressions
# read it alike: the database constraint uses the same pattern.
NOT_ONE_LINE_PATTERN = r"[\x01-\x1f\x7f-\x9f\u2028\u2029]"
_NOT_ONE_LINE = re.compile(NOT_ONE_LINE_PATTERN)
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


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


def one_line_condition(field_name: str, *, items: bool = False) -> Q:
    """The database's side of `OneLineValidator`: a text column or, with `items`, a list of names
    (`NameListField`), its items joined, holding no line break or control character."""
    column = F(field_name)
    if items:
        column = Func(column, Value(" "), function="array_to_string", output_field=TextField())
    return ~Q(Regex(column, NOT_ONE_LINE_PATTERN))


class OneLineConstraint(CheckConstraint):
    """A one-line field's CheckConstraint (`one_line_condition`), which the database holds to and
    a model's validation leaves to the field's `OneLineValidator`: it refuses the same values
    naming the field, where this would send one more query per save to say less."""

    def validate(self, model, instance, exclude=None, using=DEFAULT_DB_ALIAS):
        return None


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
