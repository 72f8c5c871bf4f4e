"""The dates and times forms read (FORMAT_MODULE_PATH): Django's, less the month-first numeric ones.

Django's English and Korean formats read "09/10/2023" as 10 September: an analyst who writes days
first (9 October) saved the wrong date without a word, in the admin and in every filter
(`date_from`), where "29/08/2023" was refused. The CSV import refuses both for the same reason.

A date or time a form or filter refuses says how to write it, in these words wherever it is read
(the admin's forms, `incidents.filters` for the API, CSV export, admin lists and public pages):
Django's "Enter a valid date." left an analyst who typed "09/10/2023" guessing. A date written so
that names no day ("2023-02-30") is told why instead (`date_refused`): being told to write the form
it was written in left the analyst to find the mistake alone."""

import calendar
import re

from django.utils.dates import MONTHS
from django.utils.translation import gettext, gettext_lazy

DATE_AS_WRITTEN = gettext_lazy("Enter the date as YYYY-MM-DD: 2023-10-09 for 9 October 2023.")
# `updated_since` and the withdrawals' `since`: ISO 8601, with its offset.
TIME_AS_WRITTEN = gettext_lazy("Enter the time as ISO 8601: 2023-10-09T14:30:00Z for 14:30 UTC on 9 October 2023.")
# A time (or a date alone) without its offset names no moment: one written by a script in Seoul was
# read as UTC, nine hours off, and a sync missed or repeated nine hours of changes.
TIME_WITHOUT_OFFSET = gettext_lazy(
    "Give the time with its offset: 2023-10-09T14:30:00Z for 14:30 UTC, or 2023-10-09T14:30:00+09:00 "
    "for 14:30 in Seoul. A time without one is not read as UTC."
)


# YYYY-MM-DD, as every door reads a date; the numbers are checked against the calendar apart.
_WRITTEN_AS_A_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})", re.ASCII)


def written_as_a_date(text: str) -> bool:
    """Whether `text` is written YYYY-MM-DD in the digits 0-9, as every door reads a date. Python's
    and Django's ISO 8601 readers also take an ISO week ("2023-W41": its Monday, the rest of the
    week lost without a word), "20231009", and digits other than 0-9 (full-width ones), which the admin
    refused: the API and the import took them."""
    return _WRITTEN_AS_A_DATE.fullmatch(text.strip()) is not None


def other_digits(text: str) -> bool:
    """Whether `text` holds digits other than 0-9 (full-width, Arabic-Indic, "²"), which Python's
    `strptime` reads as numbers: the admin's forms read a year in full-width digits, which the API refused."""
    return any(character.isdigit() and not character.isascii() for character in text)


def date_refused(text: object) -> str:
    """What a door says of a date it could not read: why a date written as YYYY-MM-DD is no day
    (`not_a_day`), else how to write one (DATE_AS_WRITTEN)."""
    return not_a_day(text) or str(DATE_AS_WRITTEN)


def not_a_day(text: object) -> str | None:
    """Why a date written as YYYY-MM-DD names no day ("2023-02-30 is not a day: February 2023 has 28
    days."), or None for a day or a text not written so."""
    written = str(text).strip()
    match = _WRITTEN_AS_A_DATE.fullmatch(written)
    if match is None:
        return None
    year, month, day = (int(number) for number in match.groups())
    if year == 0:
        return gettext("%(date)s is not a day: the years start at 0001.") % {"date": written}
    if not 1 <= month <= 12:
        return gettext("%(date)s is not a day: a year has 12 months.") % {"date": written}
    days = calendar.monthrange(year, month)[1]
    if 1 <= day <= days:
        return None
    return gettext("%(date)s is not a day: %(month)s %(year)s has %(days)s days.") % {
        "date": written,
        "month": MONTHS[month],
        "year": year,
        "days": days,
    }


def day_and_month_unambiguous(formats: list[str]) -> list[str]:
    return [format for format in formats if "%m/%d" not in format]
