"""The dates and times forms read (FORMAT_MODULE_PATH): Django's, less the month-first numeric ones.

Django's English and Korean formats read "09/10/2023" as 10 September: an analyst who writes days
first (9 October) saved the wrong date without a word, in the admin and in every filter
(`date_from`), where "29/08/2023" was refused. The CSV import refuses both for the same reason.

A date or time a form or filter refuses says how to write it, in these words wherever it is read
(the admin's forms, `incidents.filters` for the API, CSV export, admin lists and public pages):
Django's "Enter a valid date." left an analyst who typed "09/10/2023" guessing."""

from django.utils.translation import gettext_lazy

DATE_AS_WRITTEN = gettext_lazy("Enter the date as YYYY-MM-DD: 2023-10-09 for 9 October 2023.")
# `updated_since` and the withdrawals' `since`: ISO 8601, a date alone meaning its midnight in UTC.
TIME_AS_WRITTEN = gettext_lazy("Enter the time as ISO 8601: 2023-10-09T14:30:00Z for 14:30 UTC on 9 October 2023.")


def day_and_month_unambiguous(formats: list[str]) -> list[str]:
    return [format for format in formats if "%m/%d" not in format]
