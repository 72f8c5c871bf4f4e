from django.conf.locale.en import formats as django_formats

from tracker.formats import day_and_month_unambiguous

# "3 October 2023", as the stored `date_label` (migration 0072) says a day: the English pages and
# the API, CSV and releases say an incident's date alike, where Django's "Oct. 3, 2023" did not.
DATE_FORMAT = "j F Y"
# A time as staff pages write it elsewhere (the history, "changed by alice at 2024-05-01 09:30 UTC"),
# with its zone, the server's UTC: Django's "Oct. 20, 2023, 9 a.m." in the lists and on the records
# read as local time to an analyst in Seoul, nine hours off.
DATETIME_FORMAT = "Y-m-d H:i T"
DATE_INPUT_FORMATS = day_and_month_unambiguous(django_formats.DATE_INPUT_FORMATS)
DATETIME_INPUT_FORMATS = day_and_month_unambiguous(django_formats.DATETIME_INPUT_FORMATS)
