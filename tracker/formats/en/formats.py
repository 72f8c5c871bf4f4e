from django.conf.locale.en import formats as django_formats

from tracker.formats import day_and_month_unambiguous

# "3 October 2023", as the stored `date_label` (migration 0072) says a day: the English pages and
# the API, CSV and releases say an incident's date alike, where Django's "Oct. 3, 2023" did not.
DATE_FORMAT = "j F Y"
DATE_INPUT_FORMATS = day_and_month_unambiguous(django_formats.DATE_INPUT_FORMATS)
DATETIME_INPUT_FORMATS = day_and_month_unambiguous(django_formats.DATETIME_INPUT_FORMATS)
