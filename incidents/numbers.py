"""Whole numbers as people type them: in a query string, a URL, a form or a CSV cell."""

import re
import sys

from django.db import models
from django.utils.translation import gettext

# The model fields of counts (and of any other number that cannot be negative), which every door
# reads in the digits 0-9 alone (the admin's `AsWrittenMixin`, the API's serializer field mapping).
COUNT_MODEL_FIELDS = (models.PositiveIntegerField, models.PositiveSmallIntegerField, models.PositiveBigIntegerField)

# PostgreSQL's bigint, the type of every id: a larger number names no record.
MAX_ID = 2**63 - 1


def is_whole_number(text: str) -> bool:
    """Only the digits 0-9, no more of them than `int()` reads (4,300 unless Python is told
    otherwise). `str.isdigit()` also takes "²" and other digits that `int()` refuses, and `int()`
    refuses a longer run of digits (a paste gone wrong): either turned a typo into a 500 wherever
    it decided whether `int()` could read a value."""
    most_digits = sys.get_int_max_str_digits()  # 0: no limit
    return text.isascii() and text.isdigit() and (not most_digits or len(text) <= most_digits)


# "1,200" or "1.200": a thousand and two hundred in one locale, one point two in another. Read as
# either, a figure from the other locale would be misread without a word; refused, the message shows
# the digits.
GROUPED_DIGITS = re.compile(r"[0-9]{1,3}([,. '\u00a0\u202f][0-9]{3})+")


def whole_number_refused(text: str) -> str:
    """What a door says of a count it cannot read as a whole number: Django's and DRF's integer
    fields read "1.000" (a thousand, in many languages) as 1, taking the dot for a decimal point."""
    written = text.strip()
    if GROUPED_DIGITS.fullmatch(written):
        return gettext("Write %(number)s without separators: %(digits)s.") % {
            "number": written,
            "digits": re.sub(r"[^0-9]", "", written),
        }
    return gettext("Enter a whole number in the digits 0-9 alone, not %(number)s.") % {"number": written}
