from django.conf.locale.ko import formats as django_formats

from tracker.formats import day_and_month_unambiguous

DATE_INPUT_FORMATS = day_and_month_unambiguous(django_formats.DATE_INPUT_FORMATS)
DATETIME_INPUT_FORMATS = day_and_month_unambiguous(django_formats.DATETIME_INPUT_FORMATS)
