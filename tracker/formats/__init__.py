"""The dates and times forms read (FORMAT_MODULE_PATH): Django's, less the month-first numeric ones.

Django's English and Korean formats read "09/10/2023" as 10 September: an analyst who writes days
first (9 October) saved the wrong date without a word, in the admin and in every filter
(`date_from`), where "29/08/2023" was refused. The CSV import refuses both for the same reason."""


def day_and_month_unambiguous(formats: list[str]) -> list[str]:
    return [format for format in formats if "%m/%d" not in format]
