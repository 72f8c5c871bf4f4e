"""The domain: incidents, the sources that report them, and who and where they involve.

Reports disagree and are vague, so the model never forces one number or one day: an incident holds
the analysts' best estimate with a range and a qualifier, a date range with its precision, and every
source's own claim beside it. Evidence (sources, organizations, places) is protected from deletion
while any record uses it.
"""

import calendar
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable
from contextlib import contextmanager
from datetime import date, timedelta

import pghistory
import pgtrigger
from django.conf import settings
from django.contrib.postgres.fields import ArrayField, DateRangeField
from django.contrib.postgres.indexes import GinIndex, GistIndex, OpClass
from django.contrib.postgres.search import SearchVectorExact, SearchVectorField
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import MaxLengthValidator, RegexValidator
from django.db import connection, models, transaction
from django.db.models import ExpressionWrapper, F, Func, Q, Value
from django.db.models.expressions import Col, RawSQL
from django.db.models.functions import (
    Cast,
    Collate,
    Concat,
    ExtractDay,
    ExtractMonth,
    Greatest,
    Length,
    Lower,
    LPad,
    Upper,
)
from django.db.models.lookups import Exact, LessThanOrEqual
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext_lazy as _
from django_countries.fields import CountryField

from incidents.languages import CODE_SHAPE, LANGUAGE_CODE_MESSAGE, LANGUAGE_HELP, LanguageCodeField
from incidents.querysets import (
    WAITING_DECISIONS,
    Audience,
    ClaimQuerySet,
    DuplicatePairQuerySet,
    IncidentMergeQuerySet,
    IncidentQuerySet,
    IncidentRevisionQuerySet,
    IncidentRollupQuerySet,
    IncidentWithdrawalQuerySet,
    PlaceQuerySet,
    RecordWithdrawalQuerySet,
    ResponseQuerySet,
    SourceQuerySet,
    VersionFields,
    can_see_confidential,
    people_estimate,
    versions_told,
)
from incidents.text_fields import (
    CompatibilityForm,
    NameListField,
    NamesCountConstraint,
    NamesCountValidator,
    OneLineConstraint,
    OneLineValidator,
    TextInNormalForm,
    names_count_condition,
    one_line_condition,
    validate_port,
)

# The one search (incidents/search.py, IncidentSearchDocument): PostgreSQL's 'simple', which does
# no stemming, so it treats Korean, Chinese and English names alike, but leaving out accents and
# keeping a hyphenated word's parts alone (migration 0118).
SEARCH_CONFIG = "incident_search"


class DatePrecision(models.TextChoices):
    DAY = "day", "Day"
    WEEK = "week", "Week"
    MONTH = "month", "Month"
    YEAR = "year", "Year"
    RANGE = "range", "Range"
    UNKNOWN = "unknown", "Unknown"


class CountQualifier(models.TextChoices):
    EXACT = "exact", _("Exact")
    ABOUT = "about", _("About")
    AT_LEAST = "at_least", _("At least")
    AT_MOST = "at_most", _("At most")
    UNKNOWN = "unknown", _("Unknown")


class Verification(models.TextChoices):
    ALLEGED = "alleged", _("Alleged")
    CORROBORATED = "corroborated", _("Corroborated")
    VERIFIED = "verified", _("Verified")
    DISPUTED = "disputed", _("Disputed")
    RETRACTED = "retracted", _("Retracted")


class ReviewState(models.TextChoices):
    DRAFT = "draft", "Draft"
    IN_REVIEW = "in_review", "In review"
    PUBLISHED = "published", "Published"


# What each database constraint says when it is violated; `clean()` says the same on the field.
LATITUDE_RANGE_MESSAGE = "Latitude must be between -90 and 90."
LONGITUDE_RANGE_MESSAGE = "Longitude must be between -180 and 180."
BOTH_COORDINATES_MESSAGE = "Give both latitude and longitude, or neither."
PLACE_INSIDE_ITSELF_MESSAGE = "A place cannot be inside itself."
PLACE_NOWHERE_MESSAGE = (
    "Say where it is: choose the place that contains it (for Tumen, type “Jilin” and pick China > Jilin), "
    "or its country if it is one or lies in no other place. Without either, its incidents are counted in "
    "no country. For a place that lies in no country (a sea), tick “In no country”."
)
PLACE_NOT_IN_NO_COUNTRY_MESSAGE = "It has a parent or a country: leave “In no country” unticked."
TYPE_INSIDE_ITSELF_MESSAGE = "A type cannot be its own parent, directly or through others."
# How many levels deep places and incident types nest, the top one being level 1. Real places are
# country > province > city > county or district > village, with a facility or a border crossing
# in one: seven levels at most; types nest two or three. Ten leaves room for what the records have
# not met yet and bounds every walk of a tree: the trigger that passes `within_sensitive` down makes
# one nested call a level (PostgreSQL's stack ended a mark above 1,500 levels, a 500), the import
# makes a path's new places a level at a time, the public pages order the type facet as a tree. A
# rule of the data, as the loop rule beside it is, not of one deployment: a constant, not a setting.
TREE_LEVELS_MAX = 10
PLACE_TOO_DEEP_MESSAGE = (
    "Places nest at most {limit} levels deep (country > province > city > district > village is five): "
    "here {what} would be at level {level}. Choose a place higher up."
)
TYPE_TOO_DEEP_MESSAGE = (
    "Incident types nest at most {limit} levels deep: here {what} would be at level {level}. Choose a type higher up."
)
SOURCE_CITES_ITSELF_MESSAGE = "A source cannot cite itself, directly or through others."
DATES_REVERSED_MESSAGE = "The end date is before the start date."

# The row triggers that lock what a new link refers to are off while writers in bulk turn the insert
# triggers off (`set_insert_triggers`): those lock everything they link at once instead
# (`incident_sources_lock`, then `incident_links_lock`: migrations 0050, 0077). Nor do they see a
# link moved to another incident: a merge and its undo lock what the links they move refer to
# before moving them (migration 0052).
UNLESS_WRITING_IN_BULK = pgtrigger.Condition(
    f"current_setting('{settings.INSERT_TRIGGERS_OFF_SETTING}', true) IS DISTINCT FROM 'on'"
)

# An incident's update history is written by its row trigger on every change, except while a writer
# that starts a new version of many incidents at once writes it itself, in one statement
# (`set_incident_update_triggers`, services._incidents_new_version).
# The default history of inserts and deletes, for models whose update event has a condition of its own.
HISTORY_BUT_UPDATES = tuple(
    tracker for tracker in settings.PGHISTORY_DEFAULT_TRACKERS if not isinstance(tracker, pghistory.UpdateEvent)
)
INCIDENT_HISTORY_UNLESS_UPDATING_IN_BULK = pghistory.UpdateEvent(
    condition=pgtrigger.Condition(
        "OLD.* IS DISTINCT FROM NEW.* AND "
        f"current_setting('{settings.INCIDENT_UPDATE_TRIGGERS_OFF_SETTING}', true) IS DISTINCT FROM 'on'"
    )
)


def reaches_itself(obj, field: str, among: models.QuerySet | None = None) -> bool:
    """Whether following `field` (a source's cites; places and types: `tree_position_error`) from
    `obj` comes back to it, through the records of `among` (default: every record of its model): the walk ends
    at one outside it, as at the end of a chain. The database refuses only the direct loop; a longer
    one would make tree walks endless. One query per step."""
    if obj.pk is None:
        return False
    among = type(obj)._default_manager.all() if among is None else among
    attname = obj._meta.get_field(field).attname
    linked_id = getattr(obj, attname)
    seen = set()
    while linked_id is not None and linked_id not in seen:
        if linked_id == obj.pk:
            return True
        seen.add(linked_id)
        linked_id = among.filter(pk=linked_id).values_list(attname, flat=True).first()
    return False


def tree_position_error(record, *, loop_message: str, too_deep_message: str, below: str) -> str:
    """What is wrong with where `record` (a place or an incident type) stands in its tree by its
    `parent`, or "": its parent chain comes back to it (which the database refuses only for the
    direct loop: a longer one made tree walks endless), or, for a new record or one moved, it or the
    deepest record below it (`below`: "the deepest place inside it"), which move with it, would lie
    more than TREE_LEVELS_MAX levels deep. A record left where it is stays valid in a deeper tree
    stored before the rule, so that it may still be edited (a town marked sensitive), and moved up
    to within the limit.

    One query of two recursive walks, each stopped past TREE_LEVELS_MAX levels (the walk up at the
    record too, on a loop), so that a deeper tree stored before the rule costs no more; none for a
    new record at the top. A new record or a move that passes takes the table's tree lock for the
    rest of its transaction, and is checked again: two moves checked at once, each against the tree
    as the other had not yet changed it, together nested places 12 levels deep. The second now
    waits for the first to commit and is checked against what it saved. Edits that move nothing
    take no lock."""
    if record.pk is None and record.parent_id is None:
        return ""
    loops, left_in_place, levels_above, levels_below = _tree_position(record)
    # Outside a transaction (a serializer's own check before the service's) the lock would end at once.
    if (
        connection.in_atomic_block
        and not (loops or left_in_place)
        and levels_above + 1 + levels_below <= TREE_LEVELS_MAX
    ):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"{record._meta.db_table} tree"])
        loops, left_in_place, levels_above, levels_below = _tree_position(record)
    if loops:
        return loop_message
    level = levels_above + 1 + levels_below
    if left_in_place or level <= TREE_LEVELS_MAX:
        return ""
    return too_deep_message.format(limit=TREE_LEVELS_MAX, what=below if levels_below else "it", level=level)


def _tree_position(record) -> tuple[bool, bool, int, int]:
    """Whether `record`'s parent chain comes back to it, whether it stays where it is stored, how
    many levels lie above it and how many below it (`tree_position_error`). One query."""
    table = connection.ops.quote_name(record._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH RECURSIVE above(id, parent_id, level) AS (
                SELECT id, parent_id, 1 FROM {table} WHERE id = %(parent)s::bigint
                UNION ALL
                SELECT outer_record.id, outer_record.parent_id, above.level + 1
                FROM {table} AS outer_record JOIN above ON outer_record.id = above.parent_id
                WHERE above.level <= %(limit)s AND above.id IS DISTINCT FROM %(id)s::bigint
            ), left_in_place AS (
                SELECT FROM {table} WHERE id = %(id)s::bigint AND parent_id IS NOT DISTINCT FROM %(parent)s::bigint
            ), below(id, level) AS (
                SELECT id, 1 FROM {table}
                WHERE parent_id = %(id)s::bigint AND NOT EXISTS (SELECT FROM left_in_place)
                UNION ALL
                SELECT inner_record.id, below.level + 1
                FROM {table} AS inner_record JOIN below ON inner_record.parent_id = below.id
                WHERE below.level <= %(limit)s
            )
            SELECT
                EXISTS (SELECT FROM above WHERE id = %(id)s::bigint),
                EXISTS (SELECT FROM left_in_place),
                (SELECT count(*) FROM above),
                (SELECT COALESCE(max(level), 0) FROM below)
            """,
            {"id": record.pk, "parent": record.parent_id, "limit": TREE_LEVELS_MAX},
        )
        return cursor.fetchone()


def in_tree_order[Record](
    records: Iterable[Record], *, key: Callable[[Record], Hashable], parent_key: Callable[[Record], Hashable]
) -> list[tuple[Record, int]]:
    """`records` (siblings in the order given) as a tree reads: each followed by those below it,
    with its depth, 0 at the top. Records in a loop, which no top reaches, are left out. A stack,
    not recursion: a chain of types deeper than Python's recursion limit answered every visitor of
    the public pages with a RecursionError (a 500)."""
    children = defaultdict(list)
    for record in records:
        children[parent_key(record)].append(record)
    ordered, stack = [], [(record, 0) for record in reversed(children[None])]
    while stack:
        record, depth = stack.pop()
        ordered.append((record, depth))
        stack.extend((child, depth + 1) for child in reversed(children[key(record)]))
    return ordered


def count_range_constraints(prefix: str) -> list[models.CheckConstraint]:
    """Counts are never negative, min <= best <= max wherever both ends are set, and an exact count is
    one figure (a best estimate, with no minimum or maximum other than it: "exactly 500, 300-600"
    says two things at once).

    Shared by incidents and claims, which hold the same kind of uncertain figure.
    """
    best, low, high = "people_count", "people_count_min", "people_count_max"
    return [
        models.CheckConstraint(
            condition=(
                (Q(**{f"{best}__isnull": True}) | Q(**{f"{best}__gte": 0}))
                & (Q(**{f"{low}__isnull": True}) | Q(**{f"{low}__gte": 0}))
                & (Q(**{f"{high}__isnull": True}) | Q(**{f"{high}__gte": 0}))
            ),
            name=f"{prefix}_counts_not_negative",
            violation_error_code="negative_count",
            violation_error_message="Counts of people cannot be negative.",
        ),
        models.CheckConstraint(
            condition=Q(**{f"{low}__isnull": True}) | Q(**{f"{best}__isnull": True}) | Q(**{f"{low}__lte": F(best)}),
            name=f"{prefix}_count_min_not_above_best",
            violation_error_code="count_min_above_best",
            violation_error_message="The minimum number of people is above the best estimate.",
        ),
        models.CheckConstraint(
            condition=Q(**{f"{high}__isnull": True}) | Q(**{f"{best}__isnull": True}) | Q(**{f"{best}__lte": F(high)}),
            name=f"{prefix}_count_best_not_above_max",
            violation_error_code="count_best_above_max",
            violation_error_message="The best estimate of people is above the maximum.",
        ),
        models.CheckConstraint(
            condition=Q(**{f"{low}__isnull": True}) | Q(**{f"{high}__isnull": True}) | Q(**{f"{low}__lte": F(high)}),
            name=f"{prefix}_count_min_not_above_max",
            violation_error_code="count_min_above_max",
            violation_error_message="The minimum number of people is above the maximum.",
        ),
        models.CheckConstraint(
            # A qualifier left blank is filled from the figures before it is written
            # (`QualifierFromFigures`); a blank one stored would read as none of the choices.
            condition=Q(count_qualifier__in=CountQualifier.values),
            name=f"{prefix}_count_qualifier_known",
            violation_error_code="count_qualifier_unknown_value",
            violation_error_message="The count's qualifier is not one of exact, about, at least, at most or unknown.",
        ),
        models.CheckConstraint(
            condition=~Q(count_qualifier=CountQualifier.EXACT)
            | (
                Q(**{f"{best}__isnull": False})
                & (Q(**{f"{low}__isnull": True}) | Q(**{low: F(best)}))
                & (Q(**{f"{high}__isnull": True}) | Q(**{high: F(best)}))
            ),
            name=f"{prefix}_exact_count_is_one_figure",
            violation_error_code="exact_count_not_one_figure",
            violation_error_message=EXACT_COUNT_MESSAGE,
        ),
    ]


COUNT_QUALIFIER_HELP = (
    "How the count is meant: exact (one figure: the best estimate, with no other minimum or maximum), "
    "about, at least or at most the best estimate, or unknown. Left out (or blank), it is read from the "
    "figures: none, unknown; a best estimate alone, exact; a minimum alone (or with a best estimate "
    "equal to it), at least; a maximum alone (likewise), at most; any other range, about."
)


def count_qualifier_from_figures(best: int | None, low: int | None, high: int | None) -> str:
    """The qualifier the figures say when the writer gave none: "40" is exactly 40, a minimum
    alone "at least", a maximum alone "at most", a range "about", and no figure "unknown". Stored
    as "unknown", a figure sent without a word read as "unknown 40" (the API's own example)."""
    if low is None and high is None:
        return CountQualifier.UNKNOWN if best is None else CountQualifier.EXACT
    if high is None and best in (None, low):
        return CountQualifier.AT_LEAST
    if low is None and best in (None, high):
        return CountQualifier.AT_MOST
    if best is not None and low == high == best:
        return CountQualifier.EXACT
    return CountQualifier.ABOUT


class QualifierFromFigures(models.Model):
    """An incident's or claim's count whose qualifier, left blank (the field's default: the API's
    omitted field, the import's blank cell, the admin's "From the figures"), is read from the
    figures (`count_qualifier_from_figures`) once they are known: in `clean()`, before the rules
    check it, and in `save()` and `bulk_create()` (`QualifierFromFiguresQuerySet`), for writers that
    do not validate. A qualifier given is kept as given,
    and `validate_ranges` refuses it where it contradicts the figures."""

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        self.fill_count_qualifier()
        super().save(*args, **kwargs)

    def clean(self):
        self.fill_count_qualifier()
        super().clean()

    def fill_count_qualifier(self) -> None:
        if not self.count_qualifier:
            self.count_qualifier = count_qualifier_from_figures(
                self.people_count, self.people_count_min, self.people_count_max
            )


# The most characters an incident's description and a claim's excerpt hold: every door refuses more
# naming the field (the field's validator, run by `full_clean()`), and PostgreSQL holds it (a check
# constraint each). All of an incident's words are one tsvector (IncidentSearchDocument), which
# PostgreSQL bounds at 1 MB of its distinct words and their positions; a text beyond, a whole report
# pasted in, failed its save with a 500 page that lost what was typed. A character takes at most 4 of
# those bytes (two-character words of 4-byte characters, every word new: 300,000 characters failed),
# so these fit whatever they hold, leaving a fifth of the bound to the incident's other words. Prose
# repeats its words: 200,000 characters of English took 75 KB, of Korean 158 KB (measured on
# PostgreSQL's, git's and coreutils' messages in both languages). Korean, Chinese and Japanese are
# searched by pairs of letters (migration 0118), which could take twice the bytes, a new pair at
# every letter; prose repeats its pairs: 200,000 characters of the system's Chinese messages took
# 374 KB, of its Korean ones 147 KB. Beyond 1 MB, the words of the start are kept (migration 0087).
SEARCHED_TEXT_MAX_LENGTH = 200_000


def searched_text_bounded(*, field: str, name: str) -> models.CheckConstraint:
    """The database's own hold on SEARCHED_TEXT_MAX_LENGTH; doors refuse first, naming the field."""
    return models.CheckConstraint(
        condition=Q(LessThanOrEqual(Length(field), SEARCHED_TEXT_MAX_LENGTH)),
        name=name,
        violation_error_code="max_length",
        violation_error_message=f"The {field} is longer than {SEARCHED_TEXT_MAX_LENGTH:,} characters.",
    )


EXACT_COUNT_MESSAGE = (
    "An exact count is one figure: give it as the best estimate, with no other minimum or maximum, "
    "or choose another qualifier (“About” for a range)."
)


def dates_fit_their_precision() -> Q:
    """An incident's dates say what its precision says (`_precision_error` names the field): a Month
    is whole months (from a 1st to a month's last day), a Year whole years, a Week at most seven days.
    "Month, 1 to 15 July 2021" read "July 2021" on every page. A Day may span days (its label says
    them all: "3 October 2023 - 9 October 2023", with an en dash), and a Range or an unknown date any."""
    # Each date is read cast to a date (the same constraint to PostgreSQL): Django's own check of a
    # claim with a date missing (`validate_constraints`) puts an untyped NULL in its place, for which
    # PostgreSQL could not choose an `extract`; the check failed, was logged as a database error and
    # let the whole constraint pass.
    start, end = Cast("date_start", models.DateField()), Cast("date_end", models.DateField())
    day_after_end = ExpressionWrapper(end + timedelta(days=1), output_field=models.DateField())
    return (
        (
            ~Q(date_precision=DatePrecision.MONTH)
            | (Q(Exact(ExtractDay(start), 1)) & Q(Exact(ExtractDay(day_after_end), 1)))
        )
        & (
            ~Q(date_precision=DatePrecision.YEAR)
            | Q(
                Exact(ExtractDay(end), 31),
                Exact(ExtractMonth(end), 12),
                Exact(ExtractDay(start), 1),
                Exact(ExtractMonth(start), 1),
            )
        )
        & (~Q(date_precision=DatePrecision.WEEK) | Q(LessThanOrEqual(end, start + timedelta(days=6))))
    )


# The precisions of a claim that gives one end of its dates alone, as reports do ("since March 2020",
# "before 9 October 2023"): the day, month or year that end names. A Week, a Range and an unknown date
# lie between two ends.
ONE_END_PRECISIONS = (DatePrecision.DAY, DatePrecision.MONTH, DatePrecision.YEAR)


# How a precision that needs both dates is named where one is missing.
TWO_ENDED = {DatePrecision.WEEK: "A Week", DatePrecision.RANGE: "A Range", DatePrecision.UNKNOWN: "An unknown date"}


def claim_dates_fit_their_precision() -> Q:
    """A claim's dates say what its precision says. Both given: an incident's rule
    (`dates_fit_their_precision`). One given, the source's "since March 2020" (a start alone) or
    "before 9 October 2023" (an end alone, the 8th): that end at a Day, Month or Year
    (`ONE_END_PRECISIONS`), and the incident's rule holds for it, since its conditions on the missing
    end are unknown, which a check lets pass: a Month's start is a 1st, its end a month's last day, a
    Year's 1 January and 31 December. None: Unknown."""
    start_only = Q(date_start__isnull=False, date_end__isnull=True)
    # Before the day after its end, which the last day Python dates reach lacks.
    end_only = Q(date_start__isnull=True, date_end__isnull=False, date_end__lt=date.max)
    return dates_fit_their_precision() & (
        Q(date_start__isnull=False, date_end__isnull=False)
        | ((start_only | end_only) & Q(date_precision__in=ONE_END_PRECISIONS))
        | Q(date_start__isnull=True, date_end__isnull=True, date_precision=DatePrecision.UNKNOWN)
    )


def date_precision_from_dates(start, end) -> str:
    """The precision a claim's dates say when its writer gave none, as its count's qualifier is
    read from its figures (`count_qualifier_from_figures`): no date, unknown; one day, or one end
    alone ("since 14 July 2021"), day; whole years, year; whole months, month; any other span, range.
    Never a Week, which seven days do not tell from a Range. Migration 0075 read the claims entered
    before precisions so."""
    if start is None and end is None:
        return DatePrecision.UNKNOWN
    if start is None or end is None or start == end:
        return DatePrecision.DAY
    if (start.month, start.day, end.month, end.day) == (1, 1, 12, 31):
        return DatePrecision.YEAR
    if start.day == 1 and end.day == calendar.monthrange(end.year, end.month)[1]:
        return DatePrecision.MONTH
    return DatePrecision.RANGE


class PrecisionFromDates(models.Model):
    """A claim's date precision left blank (the field's default: the API's omitted field, the
    admin's "From the dates") is read from its dates (`date_precision_from_dates`), in `clean()`,
    before the rules check it, and in `save()` and `bulk_create()` (`ClaimQuerySet`), as
    `QualifierFromFigures` reads a count's qualifier. A precision given is kept as given, and
    `validate_ranges` refuses it where it contradicts the dates."""

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        self.fill_date_precision()
        super().save(*args, **kwargs)

    def clean(self):
        self.fill_date_precision()
        super().clean()

    def fill_date_precision(self) -> None:
        if not self.date_precision:
            self.date_precision = date_precision_from_dates(self.date_start, self.date_end)


def figures_range(low: int | None, high: int | None) -> str:
    """ "300-600", "from 300", "up to 600": a range of counts in an error message."""
    if low is not None and high is not None:
        return f"{low}-{high}"
    return f"from {low}" if low is not None else f"up to {high}"


# The latest clocks on Earth (Kiribati's Line Islands) are 14 hours ahead of UTC.
LATEST_UTC_OFFSET = timedelta(hours=14)


def latest_day_begun() -> date:
    """The latest day that has begun anywhere on Earth. No door knows its writer's zone (a script's,
    a spreadsheet's), and the server's UTC day is the day before an analyst's in Seoul until 09:00
    there: only a day begun nowhere yet is the future for every writer."""
    return (timezone.now() + LATEST_UTC_OFFSET).date()


def validate_day_begun(day: date, *, named: str = "The date") -> None:
    """A day of the record's past, not one begun nowhere yet (`latest_day_begun`): an incident's or
    a claim's start, a source's publication, a response: a mistyped year ("2062" for "2026") put a
    record decades ahead in the statistics, the public pages and the sources' order. A field's
    validator, so the admin, the API and the import refuse it naming the field."""
    if day > latest_day_begun():
        raise ValidationError(
            f"{named} ({day:%Y-%m-%d}) has not begun anywhere yet: the records' dates are days that have "
            "begun. Check the year.",
            code="day_not_begun",
        )


def validate_ranges(obj, *, one_end: bool = False) -> None:
    """The rules of count_range_constraints and of ordered dates, as errors that name the field;
    with `one_end` (a claim's), dates that may give one end alone (`claim_dates_fit_their_precision`).
    A start begun nowhere yet is refused too (`validate_day_begun`). The end may be later: "December
    2026" (a Month) ends on its 31st while the month runs, a date unknown up to 9999-12-31.

    Collects every problem at once, so an analyst fixes them all in one go."""
    errors = {}
    if obj.date_start:
        try:
            validate_day_begun(obj.date_start, named="The start date")
        except ValidationError as error:
            errors["date_start"] = error.messages[0]
    if obj.date_start and obj.date_end and obj.date_end < obj.date_start:
        errors["date_end"] = (
            f"The end date ({obj.date_end:%Y-%m-%d}) is before the start date ({obj.date_start:%Y-%m-%d})."
        )
    if one_end and obj.date_end == date.max and not obj.date_start:
        errors["date_end"] = (
            f"An end alone says the source's “before” the day after it, and {date.max:%Y-%m-%d} has none: "
            "give an earlier end, or a start too."
        )
    precision_error = _precision_error(obj, one_end=one_end)
    if precision_error:
        errors["date_precision"] = precision_error
    best, low, high = obj.people_count, obj.people_count_min, obj.people_count_max
    if obj.count_qualifier == CountQualifier.EXACT and best is None:
        errors["count_qualifier"] = (
            "An exact count needs its figure: give the best estimate, or choose another qualifier."
        )
    elif obj.count_qualifier == CountQualifier.EXACT and {low, high} - {None, best}:
        errors["count_qualifier"] = (
            f"An exact count is one figure, but {best} is given a range ({figures_range(low, high)}): "
            "choose “About” for a range, or clear the minimum and maximum."
        )
    if low is not None and high is not None and low > high:
        errors["people_count_min"] = f"The minimum ({low}) is above the maximum ({high})."
    if best is not None and low is not None and best < low:
        errors["people_count"] = f"The best estimate ({best}) is below the minimum ({low})."
    elif best is not None and high is not None and best > high:
        errors["people_count"] = f"The best estimate ({best}) is above the maximum ({high})."
    if errors:
        raise ValidationError(errors)


# The precisions whose dates `_precision_error` checks once they are given (a Week, a Range or an
# unknown date lies between two).
_PRECISIONS_OF_WHOLE_PERIODS = frozenset({DatePrecision.MONTH, DatePrecision.YEAR, DatePrecision.WEEK})


def _precision_error(obj, *, one_end: bool = False) -> str | None:
    """Why `obj`'s dates are not what its precision says (`dates_fit_their_precision`), or None.
    With `one_end` (a claim's, `claim_dates_fit_their_precision`), a date may be missing: the rule
    then holds for the end given, at a Day, Month or Year, and a claim without dates is Unknown."""
    start, end, precision = obj.date_start, obj.date_end, getattr(obj, "date_precision", None)
    if start and end and end < start:
        return None
    if not (start and end) and (not one_end or end == date.max):
        return None
    if not (start or end):
        if precision == DatePrecision.UNKNOWN:
            return None
        return "A claim without dates has an unknown date: choose Unknown, or give the dates the source gives."
    if not (start and end) and precision in TWO_ENDED:
        return (
            f"{TWO_ENDED[precision]} lies between two dates: give the {'end' if start else 'start'} "
            "date too, or choose Day, Month or Year for a source that gives one end alone (“since March 2020”: "
            "Month, from 2020-03-01, no end; “before 9 October 2023”: Day, no start, to 2023-10-08)."
        )
    # A Day or a Range, most of an import's 100,000 incidents: nothing formatted for them.
    if precision not in _PRECISIONS_OF_WHOLE_PERIODS:
        return None
    last = end.replace(day=calendar.monthrange(end.year, end.month)[1]) if end else None
    if start and end:
        given, day_instead = f"{start:%Y-%m-%d} to {end:%Y-%m-%d}", None
    elif start:
        given, day_instead = f"from {start:%Y-%m-%d} on", f"since {start.day} {start:%B %Y}"
    else:
        given, day_instead = f"up to {end:%Y-%m-%d}", f"before {_day_after(end)}"
    if precision == DatePrecision.MONTH and ((start and start.day != 1) or (end and end != last)):
        months = " to ".join([*([f"{start:%Y-%m}-01"] if start else []), *([f"{last:%Y-%m-%d}"] if end else [])])
        instead = f"Day for “{day_instead}”" if day_instead else "Range for part of a month"
        return (
            f"A Month is whole months, from a month's first day to a month's last: {given} is not. Give "
            f"{months}, or choose {instead}."
        )
    if precision == DatePrecision.YEAR and (
        (start and (start.month, start.day) != (1, 1)) or (end and (end.month, end.day) != (12, 31))
    ):
        if start and end:
            return (
                f"A Year is whole years, from 1 January to 31 December: {given} is not. Give {start.year}-01-01 "
                f"to {end.year}-12-31, or choose Range or Month for part of a year."
            )
        years = f"{start.year}-01-01" if start else f"{end.year}-12-31"
        return (
            f"A Year is whole years, from 1 January to 31 December: {given} is not. Give {years}, "
            f"or choose Day for “{day_instead}” (Month for a month)."
        )
    if precision == DatePrecision.WEEK and (end - start).days > 6:
        return f"A Week is at most seven days from its first: {given} is {(end - start).days + 1} days. Choose Range."
    return None


def _day_after(end) -> str:
    """ "9 October 2023": the first day after `end`, which a claim up to `end` is before."""
    after = end + timedelta(days=1)
    return f"{after.day} {after:%B %Y}"


def end_date_hint(start, precision) -> str:
    """What the end date of a range from `start` is at `precision`, for a writer who gave the start
    alone ("in July 2021": Month from 2021-07-01, so 2021-07-31)."""
    if precision == DatePrecision.DAY:
        return f"{start:%Y-%m-%d}, the start date again, for a known day"
    if precision == DatePrecision.WEEK:
        return f"at most {start + timedelta(days=6):%Y-%m-%d}, for a Week (seven days at most)"
    if precision == DatePrecision.MONTH:
        last = start.replace(day=calendar.monthrange(start.year, start.month)[1])
        return f"{last:%Y-%m-%d}, the month's last day, for a Month (“{start:%B %Y}”)"
    if precision == DatePrecision.YEAR:
        return f"{start.year}-12-31, for a Year (“{start.year}”)"
    return "the last day the sources allow (inclusive)"


def end_date_missing_message(start, precision) -> str:
    """The error for an end date left empty beside `start`, in every door that takes one (the
    admin's form, the CSV import): it says which day to write rather than only that one is needed."""
    return f"Give the last day of the range too: {end_date_hint(start, precision)}."


def substring_search_index(field: str, name: str) -> GinIndex:
    """A trigram index serving `field__nfkc__icontains` (Django writes it as UPPER(NORMALIZE(…))
    LIKE '%…%'), the admin's search of a list (accounts.admin_site.BoundedSearchMixin), so that it
    reads the matching rows instead of the whole table. Needs pg_trgm."""
    return GinIndex(OpClass(Upper(CompatibilityForm(field)), name="gin_trgm_ops"), name=name)


# Quotes and apostrophes a title may be typed with, and the plain one each stands for: an article
# pasted from its page, with a curly apostrophe, and typed by hand, with a straight one, is one title.
TITLE_QUOTES = "‘’‚‛′`´ʼ“”„‟″«»"
TITLE_QUOTES_PLAIN = "'" * 8 + '"' * 7


def comparable_title(expression) -> Func:
    """`expression` (a title) as two entries of one article compare: lowercased, its quotes and
    apostrophes plain, its runs of whitespace one space, trimmed. In SQL, so that a new title and
    the stored ones are compared by one implementation (services.source_lookalikes), through the
    index `source_comparable_title`."""
    return Func(
        Func(
            Func(Lower(expression), Value(TITLE_QUOTES), Value(TITLE_QUOTES_PLAIN), function="translate"),
            Value(r"\s+"),
            Value(" "),
            Value("g"),
            function="regexp_replace",
        ),
        function="btrim",
        output_field=models.TextField(),
    )


class TimestampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class KeptByDatabase:
    """A column the database's triggers keep, never the application: a save writes it back as the
    row holds it (`SET column = column`, which the triggers then change or not) and reads what they
    made of it (RETURNING, an insert's too), so the instance holds what the row holds."""

    db_returning = True

    def pre_save(self, model_instance, add):
        return super().pre_save(model_instance, add) if add else F(self.attname)


class KeptByDatabasePositiveIntegerField(KeptByDatabase, models.PositiveIntegerField):
    pass


class KeptByDatabaseDateTimeField(KeptByDatabase, models.DateTimeField):
    pass


class KeptByDatabaseForeignKey(KeptByDatabase, models.ForeignKey):
    pass


class VersionedModel(models.Model):
    """A record whose every save is a new version. Services compare the version a writer edited with
    the stored one (`services.VersionConflict`), so that a stale edit is refused rather than
    overwrite a newer one. The database's default too: rows written with COPY (the demo data's
    sources) name their columns."""

    version = models.PositiveIntegerField(default=1, db_default=1, editable=False)

    class Meta:
        abstract = True

    def save(self, *args, update_fields=None, **kwargs):
        if not self._state.adding:
            self.version += 1
        if update_fields is not None and "version" in update_fields:
            # A new version's kept columns (KeptByDatabase: an audience's own) are read back with it.
            kept = [field.name for field in self._meta.concrete_fields if isinstance(field, KeptByDatabase)]
            update_fields = [*update_fields, *kept]
        super().save(*args, update_fields=update_fields, **kwargs)


# The columns of a record's version and change time told to readers without Confidential access
# (`VersionsPerAudience`), which its history leaves out: the database derives them.
DISCLOSED_VERSION_FIELDS = ["disclosed_version", "disclosed_updated_at"]
# Those told to the public (`PublicVersions`: a source's, a response's, a place's), left out likewise.
PUBLIC_VERSION_FIELDS = ["public_version", "public_updated_at"]
# The creation times told to readers without Confidential access and to the public
# (`CreatedPerAudience`: a source's, a response's, an incident's), left out likewise.
CREATED_PER_AUDIENCE_FIELDS = ["disclosed_created_at", "public_created_at"]
# Every audience's kept columns of a source, a response and an incident.
KEPT_VERSION_FIELDS = [*DISCLOSED_VERSION_FIELDS, *PUBLIC_VERSION_FIELDS, *CREATED_PER_AUDIENCE_FIELDS]

# The update event of a source and a response: when a column other than their kept version columns
# changed, said of the row as JSON (as Place's `PLACE_HISTORY_UNLESS_DERIVED`). A write of them alone
# (the triggers that count a response's links, migrations 0096 and 0098, which fill them in too) is
# no event.
_KEPT_VERSION_COLUMNS = " - ".join(f"'{name}'" for name in KEPT_VERSION_FIELDS)
HISTORY_UPDATES_BUT_KEPT_VERSIONS = pghistory.UpdateEvent(
    condition=pgtrigger.Condition(
        f"((to_jsonb(OLD) - {_KEPT_VERSION_COLUMNS}) IS DISTINCT FROM (to_jsonb(NEW) - {_KEPT_VERSION_COLUMNS}))"
    )
)


class VersionsPerAudience(VersionedModel):
    """A versioned record whose version and change time readers without Confidential access are
    told apart (`querysets.version_fields` chooses): `disclosed_*` move only with a change those
    readers can see, so that a change to what is hidden from them (a confidential claim of an
    incident, a confidential source cited, a response's confidential incident) does not tell them
    that something hidden changed. Kept by the database's triggers (migrations 0095, 0096)."""

    disclosed_version = KeptByDatabasePositiveIntegerField(default=1, editable=False)
    disclosed_updated_at = KeptByDatabaseDateTimeField(default=timezone.now, editable=False, blank=True)

    class Meta:
        abstract = True


class PublicVersions(VersionedModel):
    """A record whose version and change time the public (readers who may not see unpublished
    records: anonymous ones, accounts that are not staff) is told apart: `public_*` move only with a
    change the public can see, so that a change to what only staff read (a source's notes, a
    response's link to an incident not published, a sensitive place's exact coordinates) does not
    tell it that something it may not see changed. Kept by the database's triggers (migrations
    0098, 0101, 0102). Sources, responses and incidents keep `disclosed_*` too
    (`VersionsPerAudience`); a place does not: staff without Confidential access read it whole. An
    incident shows the public all that staff without Confidential access read of it (it is
    published, or not shown) but the exact coordinates of a sensitive place it happened at."""

    public_version = KeptByDatabasePositiveIntegerField(default=1, editable=False)
    public_updated_at = KeptByDatabaseDateTimeField(default=timezone.now, editable=False, blank=True)

    class Meta:
        abstract = True


class CreatedPerAudience(models.Model):
    """A record that may be hidden from an audience for a while (a confidential source or incident,
    a draft, a response about confidential incidents alone), whose creation time each audience is
    told as the moment it first saw the record (`querysets.version_fields` chooses): its
    `created_at` was recorded in confidence. `disclosed_created_at` for readers without
    Confidential access, `public_created_at` for the public; null while that audience has never
    seen it, and never moved once set, whatever the record becomes. Kept by the database's
    triggers (migration 0104), whoever writes."""

    disclosed_created_at = KeptByDatabaseDateTimeField(null=True, editable=False, blank=True)
    public_created_at = KeptByDatabaseDateTimeField(null=True, editable=False, blank=True)

    class Meta:
        abstract = True


class CheckConstraintsInOneQuery(models.Model):
    """`validate_constraints()` (and so `full_clean()`) proving all the model's check constraints
    with one query when they all hold, as a valid write's do. Django checks each with a query of
    its own, inside a savepoint when in a transaction (three statements), built over every field:
    for an incident, 18 statements and a third of an analyst's PATCH's CPU. When one fails,
    Django's own validation runs them one by one, so the errors are the same."""

    class Meta:
        abstract = True

    def validate_constraints(self, exclude=None):
        exclude = set(exclude or ())
        # Those over a field already in error (`exclude`) are skipped, as Django skips them.
        checks = [
            constraint
            for constraint in self._meta.constraints
            if isinstance(constraint, models.CheckConstraint)
            and not Q(constraint.condition).referenced_base_fields & exclude
        ]
        if not checks:
            return super().validate_constraints(exclude)
        # Each holds unless it is false (unknown passes), so together they hold when their
        # conjunction is not false: what CheckConstraint.validate() asks of one condition.
        together = models.CheckConstraint(condition=Q(*(check.condition for check in checks)), name="together")
        referenced = set().union(*(Q(check.condition).referenced_base_fields for check in checks))
        try:
            # Given only the fields the conditions name: building the query over every field
            # cost more than sending it.
            together.validate(
                type(self), self, exclude={field.name for field in self._meta.concrete_fields} - referenced
            )
        except ValidationError:
            return super().validate_constraints(exclude)
        self._proven_checks = checks
        try:
            return super().validate_constraints(exclude)
        finally:
            del self._proven_checks

    def get_constraints(self):
        proven = getattr(self, "_proven_checks", ())
        return [
            (model, [constraint for constraint in model_constraints if constraint not in proven])
            for model, model_constraints in super().get_constraints()
        ]


# The code of a name unique whatever its case (a place's in its parent, an organization's) when taken.
NAME_TAKEN = "name_taken"


@contextmanager
def name_taken_named(namesakes: models.QuerySet, message: Callable[[models.Model], str]):
    """Turns the unique-name constraint's page-wide "Constraint … is violated." into an error on
    the name naming the record that holds it (the first of `namesakes`, the records of that name
    other than the one validated), which `message` words. Queries only when the name is taken."""
    try:
        yield
    except ValidationError as invalid:
        errors = invalid.update_error_dict({})
        taken_errors = [error for error in errors.get(NON_FIELD_ERRORS, []) if error.code == NAME_TAKEN]
        if not taken_errors:
            raise
        rest = [error for error in errors[NON_FIELD_ERRORS] if error.code != NAME_TAKEN]
        errors[NON_FIELD_ERRORS] = rest
        if not rest:
            del errors[NON_FIELD_ERRORS]
        taken = namesakes.first()
        errors.setdefault("name", []).append(ValidationError(message(taken), code=NAME_TAKEN))
        raise ValidationError(errors) from invalid


class OrganizationKind(models.TextChoices):
    NGO = "ngo", "NGO"
    GOVERNMENT = "government", "Government"
    INTERGOVERNMENTAL = "intergovernmental", "Intergovernmental"
    MEDIA = "media", "Media"
    RELIGIOUS = "religious", "Religious"
    RESEARCH = "research", "Research"
    OTHER = "other", "Other"


@pghistory.track()
class Organization(TextInNormalForm, VersionedModel, TimestampedModel):
    name = models.CharField(max_length=255, validators=[OneLineValidator("A name")])
    acronym = models.CharField(max_length=32, blank=True, validators=[OneLineValidator("An acronym")])
    kind = models.CharField(max_length=20, choices=OrganizationKind.choices, default=OrganizationKind.OTHER)
    country = CountryField(blank=True, help_text="The country it is based in or represents.")
    website = models.URLField(blank=True, validators=[validate_port])
    description = models.TextField(blank=True)
    aliases = NameListField(
        models.CharField(max_length=255, validators=[OneLineValidator("An alias")]),
        default=list,
        blank=True,
        validators=[NamesCountValidator("aliases")],
        help_text="Other spellings and names in other languages, one per line.",
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            # Whatever its case: "unhcr" beside "UNHCR" split one organization's incidents in two.
            models.UniqueConstraint(
                Lower("name"),
                name="organization_name_unique",
                violation_error_code=NAME_TAKEN,
            ),
            OneLineConstraint(condition=one_line_condition("name"), name="organization_name_one_line"),
            OneLineConstraint(condition=one_line_condition("acronym"), name="organization_acronym_one_line"),
            OneLineConstraint(
                condition=one_line_condition("aliases", items=True), name="organization_aliases_one_line"
            ),
            NamesCountConstraint(condition=names_count_condition("aliases"), name="organization_aliases_count"),
        ]
        indexes = [
            # Serves matching by alias in imports.
            GinIndex(fields=["aliases"], name="organization_aliases"),
        ]

    def __str__(self):
        return f"{self.name} ({self.acronym})" if self.acronym else self.name

    def validate_constraints(self, exclude=None):
        with name_taken_named(
            Organization.objects.annotate(folded=Lower("name"))
            .filter(folded=Lower(Value(self.name)))
            .exclude(pk=self.pk),
            lambda taken: (
                f"“{taken.name}” is already an organization's name (names are told apart "
                "whatever their case): edit that organization, or name this one apart."
            ),
        ):
            super().validate_constraints(exclude)


class PlaceKind(models.TextChoices):
    COUNTRY = "country", "Country"
    PROVINCE = "province", "Province"
    CITY = "city", "City"
    COUNTY = "county", "County"
    BORDER_AREA = "border_area", "Border area"
    CROSSING = "crossing", "Border crossing"
    FACILITY = "facility", "Facility"
    OTHER = "other", "Other"


# Without `within_sensitive` in the history: the database derives it (`keep_within_sensitive`), and a
# place marked sensitive would otherwise add an event to every place inside it; nor the public's
# version columns, which it derives too (`PublicVersions`; migration 0101 fills them in); nor
# `country_inherited`, which says how the country it records was given, and moves only with it (or
# with the parent, moved out of every place). The update event's
# condition says "any other column changed" of the row as JSON, not column by column as pghistory's
# own would: that one names `version`, and could not be installed on a database migrated back to
# before it (PGTRIGGER_INSTALL_ON_MIGRATE installs every trigger after each migrate).
_PLACE_DERIVED_COLUMNS = " - ".join(
    f"'{name}'" for name in ["within_sensitive", "country_inherited", *PUBLIC_VERSION_FIELDS]
)
PLACE_HISTORY_UNLESS_DERIVED = pghistory.UpdateEvent(
    condition=pgtrigger.Condition(
        f"((to_jsonb(OLD) - {_PLACE_DERIVED_COLUMNS}) IS DISTINCT FROM (to_jsonb(NEW) - {_PLACE_DERIVED_COLUMNS}))"
    )
)


@pghistory.track(
    *HISTORY_BUT_UPDATES,
    PLACE_HISTORY_UNLESS_DERIVED,
    exclude=["within_sensitive", "country_inherited", *PUBLIC_VERSION_FIELDS],
)
class Place(TextInNormalForm, PublicVersions, TimestampedModel):
    name = models.CharField(max_length=255, validators=[OneLineValidator("A name")])
    alternate_names = NameListField(
        models.CharField(max_length=255, validators=[OneLineValidator("An other name")]),
        default=list,
        blank=True,
        validators=[NamesCountValidator("other names")],
        help_text="Names in Korean, Chinese and their romanisations, one per line.",
    )
    kind = models.CharField(max_length=20, choices=PlaceKind.choices, default=PlaceKind.OTHER)
    parent = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="children",
        help_text="The place that contains it: city → province → country.",
    )
    country = CountryField(
        blank=True,
        help_text="Left blank, the country of the place that contains it, which it then follows: moved into "
        "another place, or that place's country corrected, it takes the new one.",
    )
    # Whether `country` is the containing place's, taken when the writer left it blank (`save`),
    # which it follows (`services._country_followed`, the trigger `keep_country_followed`); a
    # country a writer gave is theirs. A copy kept for good moved nothing: a province entered under
    # China and moved under North Korea kept counting its incidents, and its towns', in China.
    country_inherited = models.BooleanField(
        "country from the place containing it",
        default=False,
        db_default=False,
        editable=False,
        help_text="Its country is the nearest containing place's, and follows it.",
    )
    latitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    longitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    sensitive = models.BooleanField(
        default=False,
        help_text="Public views show, for this place and every place inside it, the coordinates of the "
        "nearest place containing them that is not sensitive.",
    )
    # Kept by the database (`keep_within_sensitive`): a village inside a sensitive town has its own
    # coordinates, which would show where the town is, so it is shown coarsened too.
    within_sensitive = models.BooleanField(
        "coarsened in public views",
        default=False,
        editable=False,
        help_text="This place or one containing it is sensitive: public views never show its own coordinates.",
    )

    # What the writer says of a place with neither parent nor country (not stored): True, that it
    # lies in no country (a sea); False, that it does not, which refuses it; None, nothing, which
    # keeps a place saved so as it is (it was said when it was made) and refuses a new one.
    in_no_country: bool | None = None

    objects = PlaceQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            # Whatever its case: "tumen" beside "Tumen" in Jilin counted its incidents apart. The
            # form's message names the place (`Place.validate_constraints`).
            models.UniqueConstraint(
                Lower("name"),
                "parent",
                nulls_distinct=False,
                name="place_name_unique_in_parent",
                violation_error_code=NAME_TAKEN,
            ),
            OneLineConstraint(condition=one_line_condition("name"), name="place_name_one_line"),
            OneLineConstraint(
                condition=one_line_condition("alternate_names", items=True), name="place_alternate_names_one_line"
            ),
            NamesCountConstraint(
                condition=names_count_condition("alternate_names"), name="place_alternate_names_count"
            ),
            models.CheckConstraint(
                condition=Q(latitude__isnull=True) | Q(latitude__gte=-90, latitude__lte=90),
                name="place_latitude_in_range",
                violation_error_code="latitude_out_of_range",
                violation_error_message=LATITUDE_RANGE_MESSAGE,
            ),
            models.CheckConstraint(
                condition=Q(longitude__isnull=True) | Q(longitude__gte=-180, longitude__lte=180),
                name="place_longitude_in_range",
                violation_error_code="longitude_out_of_range",
                violation_error_message=LONGITUDE_RANGE_MESSAGE,
            ),
            models.CheckConstraint(
                condition=Q(latitude__isnull=True, longitude__isnull=True)
                | Q(latitude__isnull=False, longitude__isnull=False),
                name="place_coordinates_both_or_neither",
                violation_error_code="half_coordinates",
                violation_error_message=BOTH_COORDINATES_MESSAGE,
            ),
            models.CheckConstraint(
                condition=~Q(parent=F("id")),
                name="place_not_own_parent",
                violation_error_code="own_parent",
                violation_error_message=PLACE_INSIDE_ITSELF_MESSAGE,
            ),
        ]
        triggers = [
            # `within_sensitive`, whatever a writer sent (a form's stale copy, an import, raw SQL):
            # the place's own mark or its parent's kept value, which the next trigger keeps for
            # every place below. A new place, or one moved, reads its parent locked (FOR SHARE): a
            # mark of the parent not yet committed is waited for and read, and a mark that comes
            # after waits for the place to commit, so that its walk down the tree finds it. Read
            # unlocked, both committed and the place kept its exact coordinates inside a sensitive
            # one. A place that stays where it is reads its parent unlocked: a mark of the parent
            # that commits meanwhile reaches it (it waits for the place's row), and renaming a
            # village while its town is marked does not wait in a cycle with the mark.
            pgtrigger.Trigger(
                name="derive_within_sensitive",
                when=pgtrigger.Before,
                operation=pgtrigger.Insert | pgtrigger.Update,
                level=pgtrigger.Row,
                declare=[("parent_within", "boolean")],
                func="""
                IF TG_OP = 'UPDATE' AND NEW.parent_id IS NOT DISTINCT FROM OLD.parent_id THEN
                    SELECT within_sensitive INTO parent_within FROM incidents_place WHERE id = NEW.parent_id;
                ELSE
                    SELECT within_sensitive INTO parent_within FROM incidents_place WHERE id = NEW.parent_id FOR SHARE;
                END IF;
                NEW.within_sensitive := NEW.sensitive OR COALESCE(parent_within, false);
                RETURN NEW;
                """,
            ),
            # A place whose country changed gives it to the places inside it whose country is taken
            # from it: those entered while it had none, and those that follow it (`country_inherited`),
            # and they to theirs, down to places with a country of their own. A new version of each,
            # recorded in its history: its country is everyone's to read, and an edit read before
            # meets a conflict rather than give it the old country back as its own. Here rather than
            # in the service, whatever the writer (a raw move, a migration), and a level a statement:
            # each reads the places committed meanwhile, which one walk of the tree from its start
            # would miss (a town entered under the province while its country was corrected).
            pgtrigger.Trigger(
                name="keep_country_followed",
                when=pgtrigger.After,
                operation=pgtrigger.Update,
                level=pgtrigger.Row,
                condition=pgtrigger.Q(old__country__df=pgtrigger.F("new__country"), new__country__gt=""),
                func="""
                UPDATE incidents_place
                SET country = NEW.country, country_inherited = true, version = version + 1,
                    updated_at = statement_timestamp()
                WHERE parent_id = NEW.id AND (country = '' OR country_inherited) AND country <> NEW.country;
                RETURN NULL;
                """,
            ),
            # A place whose `within_sensitive` changed (marked, un-marked, moved) makes its children
            # derive theirs again, and they theirs, down the tree; only those whose value changes.
            pgtrigger.Trigger(
                name="keep_within_sensitive",
                when=pgtrigger.After,
                operation=pgtrigger.Insert | pgtrigger.Update,
                level=pgtrigger.Row,
                func="""
                IF TG_OP = 'UPDATE' AND OLD.within_sensitive = NEW.within_sensitive THEN
                    RETURN NULL;
                END IF;
                UPDATE incidents_place SET within_sensitive = NEW.within_sensitive OR sensitive
                WHERE parent_id = NEW.id AND within_sensitive <> (NEW.within_sensitive OR sensitive);
                RETURN NULL;
                """,
            ),
        ]
        indexes = [
            # Serves the country filter on incidents (places of a country) and the admin filter.
            models.Index(fields=["country"], name="place_country"),
            # Serves the place autocomplete (the admin's search fields, `icontains`).
            substring_search_index("name", "place_name_search"),
        ]

    def __str__(self):
        return self.name

    def save(self, *args, **kwargs):
        # A place entered without a country lies in its parent's (Jilin under China): statistics and
        # the country filter count it there, and it follows that country from then on
        # (`keep_country_followed`). Migration 0015 did the same for the places before it.
        if self.country or not self.parent_id:
            return super().save(*args, **kwargs)
        with transaction.atomic():
            # The parent read locked: its move, or a change of its country (its own, or carried down
            # to it), not yet committed is waited for and read, and one that comes after waits for
            # this place, so that it is carried down to it. Read unlocked, both committed and the
            # place kept the old country.
            Place.objects.select_for_update(no_key=True).filter(pk=self.parent_id).values_list("pk").first()
            self.country = self.inherited_country()
            self.country_inherited = True
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "country", "country_inherited"}
            return super().save(*args, **kwargs)

    @property
    def is_nowhere(self) -> bool:
        """Neither inside another place nor in a country: the statistics count its incidents in no
        country. Right for a sea, a slip for a city entered by its name alone."""
        return self.parent_id is None and not self.country

    def inherited_country(self) -> str:
        """The country of the nearest place above this one that has one, or "". One recursive query,
        through the places above without one (UNION stops at a loop)."""
        table = connection.ops.quote_name(Place._meta.db_table)
        nearest = RawSQL(
            f"WITH RECURSIVE above(id, parent_id, country) AS (SELECT id, parent_id, country FROM {table}"
            " WHERE id = %s UNION SELECT outer_place.id, outer_place.parent_id, outer_place.country"
            f" FROM {table} AS outer_place JOIN above ON outer_place.id = above.parent_id AND above.country = '')"
            " SELECT id FROM above WHERE country <> ''",
            [self.parent_id],
        )
        return Place.objects.filter(pk__in=nearest).values_list("country", flat=True).first() or ""

    def clean(self):
        # Where it is, and the database's constraints as errors on the field at fault, all at once
        # (Django would report a violated constraint as a page-wide error naming the constraint).
        errors = self.where_errors()
        if self.latitude is not None and not -90 <= self.latitude <= 90:
            errors["latitude"] = LATITUDE_RANGE_MESSAGE
        if self.longitude is not None and not -180 <= self.longitude <= 180:
            errors["longitude"] = LONGITUDE_RANGE_MESSAGE
        if (self.latitude is None) != (self.longitude is None):
            errors["latitude" if self.latitude is None else "longitude"] = BOTH_COORDINATES_MESSAGE
        if position_error := tree_position_error(
            self,
            loop_message=PLACE_INSIDE_ITSELF_MESSAGE,
            too_deep_message=PLACE_TOO_DEEP_MESSAGE,
            below="the deepest place inside it",
        ):
            errors["parent"] = position_error
        if errors:
            raise ValidationError(errors)

    def validate_constraints(self, exclude=None):
        def message(taken):
            where = f"in {self.parent.name}" if self.parent_id else "a top-level place"
            return (
                f"“{taken.name}” is already {where} (names in one place are told apart whatever their "
                "case): edit that place, or name this one apart."
            )

        with name_taken_named(
            Place.objects.annotate(folded=Lower("name"))
            .filter(folded=Lower(Value(self.name)), parent_id=self.parent_id)
            .exclude(pk=self.pk),
            message,
        ):
            super().validate_constraints(exclude)

    def where_errors(self) -> dict[str, str]:
        """A place says where it is: a quick "Tumen" became a top-level place in no country, which
        the statistics count in no country. A country (or a place in one) is top-level by right; a
        place in no country at all is kept so when its writer says so (`in_no_country`). Writes
        are checked (`clean()`, so the admin, the API and `record_save`; the import's new places),
        not what is stored: places saved in no country before the rule stay valid. As {field:
        message}; runs a query for a saved place left in no country without a word on it."""
        if self.in_no_country and not self.is_nowhere:
            return {"in_no_country": PLACE_NOT_IN_NO_COUNTRY_MESSAGE}
        if not self.is_nowhere or self.in_no_country:
            return {}
        kept_so = (
            self.in_no_country is None
            and self.pk is not None
            and Place.objects.filter(pk=self.pk, parent__isnull=True, country="").exists()
        )
        return {} if kept_so else {"parent": PLACE_NOWHERE_MESSAGE}


class IncidentTypeManager(models.Manager):
    def get_by_natural_key(self, slug):
        return self.get(slug=slug)


# A type's slug is its `type` cell in the CSV: one starting with "-" (or "_") reached an analyst's
# spreadsheet as a formula (`-A1-B2`), where the free-text cells are defused (exports.FORMULA_LIKE).
TYPE_SLUG_START = r"^[^-_]"
TYPE_SLUG_START_MESSAGE = "Start the slug with a letter or a digit: a spreadsheet reads “-” first as a formula."


@pghistory.track()
class IncidentType(TextInNormalForm, VersionedModel, TimestampedModel):
    slug = models.SlugField(
        max_length=64, unique=True, validators=[RegexValidator(TYPE_SLUG_START, TYPE_SLUG_START_MESSAGE)]
    )
    name = models.CharField(max_length=128, validators=[OneLineValidator("A name")])
    parent = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="children")
    description = models.TextField(blank=True)

    # Fixtures and imports name types by slug, which stays stable across databases; ids do not.
    objects = IncidentTypeManager()

    class Meta:
        ordering = ["name"]
        constraints = [
            # Whatever its case, as places' and organizations' names: "Arrest" beside "arrest"
            # counted one kind of incident under two types.
            models.UniqueConstraint(
                Lower("name"),
                name="incident_type_name_unique",
                violation_error_code=NAME_TAKEN,
            ),
            models.CheckConstraint(
                condition=~Q(parent=F("id")),
                name="incident_type_not_own_parent",
                violation_error_code="own_parent",
                violation_error_message=TYPE_INSIDE_ITSELF_MESSAGE,
            ),
            OneLineConstraint(condition=one_line_condition("name"), name="incident_type_name_one_line"),
            models.CheckConstraint(
                condition=Q(slug__regex=TYPE_SLUG_START),
                name="incident_type_slug_starts_plain",
                violation_error_code="slug_start",
                violation_error_message=TYPE_SLUG_START_MESSAGE,
            ),
        ]

    def __str__(self):
        return self.name

    def clean(self):
        if position_error := tree_position_error(
            self,
            loop_message=TYPE_INSIDE_ITSELF_MESSAGE,
            too_deep_message=TYPE_TOO_DEEP_MESSAGE,
            below="the deepest type under it",
        ):
            raise ValidationError({"parent": position_error})

    def validate_constraints(self, exclude=None):
        with name_taken_named(
            IncidentType.objects.annotate(folded=Lower("name"))
            .filter(folded=Lower(Value(self.name)))
            .exclude(pk=self.pk),
            lambda taken: (
                f"“{taken.name}” is already an incident type's name (names are told apart whatever their "
                "case): use that type, or name this one apart."
            ),
        ):
            super().validate_constraints(exclude)

    def natural_key(self):
        return (self.slug,)


class SourceKind(models.TextChoices):
    NEWS_ARTICLE = "news_article", "News article"
    NGO_REPORT = "ngo_report", "NGO report"
    GOVERNMENT_STATEMENT = "government_statement", "Government statement"
    TESTIMONY = "testimony", "Testimony"
    SOCIAL_MEDIA = "social_media", "Social media"
    ACADEMIC = "academic", "Academic"
    OTHER = "other", "Other"


@pghistory.track(*HISTORY_BUT_UPDATES, HISTORY_UPDATES_BUT_KEPT_VERSIONS, exclude=KEPT_VERSION_FIELDS)
class Source(TextInNormalForm, CreatedPerAudience, PublicVersions, VersionsPerAudience, TimestampedModel):
    title = models.CharField(max_length=500, validators=[OneLineValidator("A title")])
    kind = models.CharField(max_length=24, choices=SourceKind.choices, default=SourceKind.OTHER)
    url = models.URLField(max_length=1000, blank=True, validators=[validate_port])
    publisher = models.ForeignKey(
        Organization, on_delete=models.PROTECT, null=True, blank=True, related_name="published_sources"
    )
    author = models.CharField(max_length=255, blank=True, validators=[OneLineValidator("An author")])
    published_on = models.DateField(null=True, blank=True, validators=[validate_day_begun])
    language = LanguageCodeField(help_text=LANGUAGE_HELP)
    archive_url = models.URLField(max_length=1000, blank=True, validators=[validate_port])
    cites = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="cited_by",
        help_text="The source this one relays (a news article citing an NGO report, citing a testimony).",
    )
    confidential = models.BooleanField(
        default=False, help_text="Only users with the confidential permission may see it (e.g. an informant)."
    )
    notes = models.TextField(blank=True)

    objects = SourceQuerySet.as_manager()

    class Meta:
        ordering = ["-published_on", "title"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(cites=F("id")),
                name="source_does_not_cite_itself",
                violation_error_code="cites_itself",
                violation_error_message=SOURCE_CITES_ITSELF_MESSAGE,
            ),
            OneLineConstraint(condition=one_line_condition("title"), name="source_title_one_line"),
            OneLineConstraint(condition=one_line_condition("author"), name="source_author_one_line"),
            # The code's shape, not pycountry's list of 7,900 codes: ISO 639-3 gains and retires codes
            # every year, and a list in the database would need a migration with each pycountry
            # release (and refuse rows a retired code still names). The shape alone keeps out what split
            # the filters and statistics: names, upper case, regions ("English", "EN", "ko-KR").
            models.CheckConstraint(
                condition=Q(language="") | Q(language__regex=CODE_SHAPE),
                name="source_language_code",
                violation_error_code="not_a_language_code",
                violation_error_message=LANGUAGE_CODE_MESSAGE,
            ),
        ]
        indexes = [
            # Serves the source autocomplete (the admin's search fields, `icontains`).
            substring_search_index("title", "source_title_search"),
            # Serve the look for a source already recorded, on adding one (services.source_lookalikes):
            # by its title as compared, and by its address (`url__icontains`).
            models.Index(comparable_title("title"), name="source_comparable_title"),
            substring_search_index("url", "source_url_search"),
            # Serves hiding confidential sources' claims (ClaimQuerySet.disclosed_to): the few
            # confidential sources, read from this index alone.
            models.Index(fields=["id"], condition=Q(confidential=True), name="source_confidential"),
            # Serve each audience's incremental sync of sources (`updated_since`, `ordering=updated_at`),
            # by the change time it is told (`version_fields`), from that time on in the pages' order.
            models.Index(fields=["updated_at", "id"], name="source_changed"),
            models.Index(
                fields=["disclosed_updated_at", "id"], condition=Q(confidential=False), name="source_disclosed_changed"
            ),
            models.Index(
                fields=["public_updated_at", "id"], condition=Q(confidential=False), name="source_public_changed"
            ),
        ]
        triggers = [
            # A source given a publisher waits for a write that renames the publisher to commit, and
            # that write for it, as a claim does (Claim's `lock_publisher`): the search words of the
            # incidents that cite the source hold its publisher's names (migration 0050). A save that
            # keeps the publisher locks nothing, as for an incident's type (Incident's `lock_type`).
            pgtrigger.Trigger(
                name="lock_publisher",
                when=pgtrigger.Before,
                operation=pgtrigger.UpdateOf("publisher_id"),
                level=pgtrigger.Row,
                func="""
                IF NEW.publisher_id IS NOT DISTINCT FROM OLD.publisher_id THEN
                    RETURN NEW;
                END IF;
                PERFORM FROM incidents_organization WHERE id = NEW.publisher_id FOR SHARE;
                RETURN NEW;
                """,
            ),
            # A source that leaves some readers' view (made confidential, deleted) is recorded with the
            # narrowest audience that saw it (RecordWithdrawal), so that an incremental sync tells
            # their copies to drop it, whatever the door. Never off in bulk: a row for a rare change.
            pgtrigger.Trigger(
                name="record_withdrawal",
                when=pgtrigger.After,
                operation=pgtrigger.Delete | pgtrigger.UpdateOf("confidential"),
                level=pgtrigger.Row,
                func=f"""
                IF TG_OP = 'UPDATE' AND (OLD.confidential OR NOT NEW.confidential) THEN
                    RETURN NULL;
                END IF;
                INSERT INTO incidents_recordwithdrawal (record_type, record_id, audience, withdrawn_at)
                VALUES (
                    'source', OLD.id,
                    CASE WHEN OLD.confidential THEN {Audience.CONFIDENTIAL:d} ELSE {Audience.PUBLIC:d} END,
                    clock_timestamp()
                );
                RETURN NULL;
                """,
            ),
        ]

    def __str__(self):
        return self.title

    @property
    def label(self) -> str:
        """The source told apart from another of its title, as a Reviewer compares claims ("Annual
        report 2023 · Human Rights Watch · 2024-01-11"; the admin's autocomplete offers it so):
        HRW's and Amnesty's annual reports read alike. Reads the publisher: load it with the source."""
        publisher = self.publisher.name if self.publisher_id is not None else None
        published_on = self.published_on.isoformat() if self.published_on else None
        return " · ".join(part for part in (self.title, publisher, published_on) if part)

    def clean(self):
        # The direct loop, on the field (the constraint's error names none). A longer one is refused
        # by services.record_save, only where its writer may see every source on it.
        if self.pk is not None and self.cites_id == self.pk:
            raise ValidationError({"cites": SOURCE_CITES_ITSELF_MESSAGE})


# Tracked so that adding or removing a place shows in the incident's history.
@pghistory.track()
class IncidentPlace(models.Model):
    """Links an incident to its places; a place in use cannot be deleted."""

    incident = models.ForeignKey("Incident", on_delete=models.CASCADE, related_name="incident_places")
    place = models.ForeignKey(Place, on_delete=models.PROTECT, related_name="incident_places")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["incident", "place"], name="incident_place_unique")]
        indexes = [
            # Serves the place and country filters (incidents at a place), the other direction being
            # covered by the unique constraint's index.
            models.Index(fields=["place", "incident"], name="incident_place_by_place"),
        ]
        triggers = [
            # An incident linked to a place waits for a write that changes the place or a place above
            # it (name, parent, country) to commit, and that write for the link: each one's refresh of
            # the kept export row and search words, and the count into the statistics' totals, then
            # reads the other's change. Without it, an incident recorded at a place while a reviewer
            # changed its country, or renamed or moved its province, kept the place as it was: counted
            # in the old country, exported with the old path (migration 0049). The chain is locked by
            # `incident_place_lock`, outermost place first. Writers in bulk, which turn the insert
            # triggers off (`set_insert_triggers`), lock every place they link in one call to it
            # (through `incident_links_lock`) instead: run for each of 200,000 links, this trigger
            # made an import of 100,000 incidents 45% slower.
            pgtrigger.Trigger(
                name="lock_place",
                when=pgtrigger.Before,
                operation=pgtrigger.Insert | pgtrigger.UpdateOf("place_id"),
                level=pgtrigger.Row,
                condition=UNLESS_WRITING_IN_BULK,
                func="""
                PERFORM incident_place_lock(ARRAY[NEW.place_id]);
                RETURN NEW;
                """,
            ),
        ]

    def __str__(self):
        return f"{self.incident_id} @ {self.place_id}"


# Each incident's human-friendly id, derived from its primary key so it never changes and is never
# reused (PostgreSQL identities are not reused). Padded to six digits, longer when the id needs it.
_ID_TEXT = Cast("id", models.TextField())
PUBLIC_ID_EXPRESSION = Concat(
    Value("INC-"), LPad(_ID_TEXT, Greatest(Length(_ID_TEXT), Value(6)), Value("0")), output_field=models.TextField()
)


def public_id_of(incident_id: int) -> str:
    """PUBLIC_ID_EXPRESSION in Python, for labels that hold only the incident's key (a claim's, a
    pair's): the id people know, without reading the incident."""
    return f"INC-{incident_id:06d}"


class DateLabel(Func):
    """Calls the SQL function of migration 0072 ("29 August 2023", "July 2021 - September 2021",
    "Date unknown (2018 - 2022)", with en dashes): the whole range at its precision, worded as the English public
    pages word it (incidents/templatetags/public_pages.py, `dates`).

    The label lives in SQL, not Python, so the admin, the API and `COPY` exports read the same column.
    """

    function = "incident_date_label"
    output_field = models.TextField()


@pghistory.track(
    *HISTORY_BUT_UPDATES,
    INCIDENT_HISTORY_UNLESS_UPDATING_IN_BULK,
    # The history keeps the incident's generated columns as plain copies of the stored values rather
    # than computing them again: a generated column of the event table is planned anew by each run
    # of the row trigger's INSERT, which made the trigger 8x slower (0.9 s against 7.5 s for 5,000
    # updated incidents, migration 0055). The values are the same: those of the row recorded.
    attrs={"public_id": models.TextField(), "date_label": models.TextField()},
    # Derived by the database from the rest of the row and of its claims (migrations 0095, 0102).
    exclude=[*KEPT_VERSION_FIELDS, "disclosed_updated_by"],
)
class Incident(
    TextInNormalForm,
    QualifierFromFigures,
    CheckConstraintsInOneQuery,
    CreatedPerAudience,
    PublicVersions,
    VersionsPerAudience,
    TimestampedModel,
):
    public_id = models.GeneratedField(expression=PUBLIC_ID_EXPRESSION, output_field=models.TextField(), db_persist=True)
    title = models.CharField(max_length=300, validators=[OneLineValidator("A title")])
    incident_type = models.ForeignKey(IncidentType, on_delete=models.PROTECT, related_name="incidents")
    description = models.TextField(blank=True, validators=[MaxLengthValidator(SEARCHED_TEXT_MAX_LENGTH)])

    date_start = models.DateField(help_text="First day of the range the incident lies in.")
    date_end = models.DateField(help_text="Last day of that range (inclusive); equal to the start for a known day.")
    date_precision = models.CharField(
        max_length=8,
        choices=DatePrecision.choices,
        default=DatePrecision.DAY,
        help_text="How precisely the sources date it: day, week (at most seven days), month (whole months), "
        "year (whole years), range (any days between the two dates) or unknown. The label is made from it.",
    )
    date_label = models.GeneratedField(
        expression=DateLabel("date_start", "date_end", "date_precision"),
        output_field=models.TextField(),
        db_persist=True,
    )

    people_count = models.PositiveIntegerField(null=True, blank=True, help_text="The analysts' best estimate.")
    people_count_min = models.PositiveIntegerField(null=True, blank=True)
    people_count_max = models.PositiveIntegerField(null=True, blank=True)
    count_qualifier = models.CharField(
        max_length=8,
        choices=CountQualifier.choices,
        blank=True,
        default="",
        help_text=COUNT_QUALIFIER_HELP,
    )

    places = models.ManyToManyField(Place, through=IncidentPlace, related_name="incidents", blank=True)

    verification = models.CharField(max_length=12, choices=Verification.choices, default=Verification.ALLEGED)
    review_state = models.CharField(max_length=10, choices=ReviewState.choices, default=ReviewState.DRAFT)
    confidential = models.BooleanField(default=False)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", editable=False
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", editable=False
    )
    version = models.PositiveIntegerField(default=1, editable=False)
    # Who made the last change readers without Confidential access can see (`querysets.version_fields`
    # chooses), kept with `disclosed_version` and `disclosed_updated_at` by the database's triggers
    # (migration 0097): a change to what is hidden from them does not tell them who changed it.
    disclosed_updated_by = KeptByDatabaseForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", editable=False
    )
    # Set by a merge (incidents.merges): the incident is kept, with its public id, so that its address
    # forever leads to the survivor, and every read leaves it out (`visible_to`).
    merged_into = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="merged_incidents",
        editable=False,
        db_index=False,
        help_text="The incident this one was merged into; it is then shown nowhere but as a redirect.",
    )

    objects = IncidentQuerySet.as_manager()

    class Meta:
        ordering = ["-date_start", "-id"]
        permissions = [
            ("view_confidential", "Can see confidential incidents, claims and sources"),
            ("submit_incident", "Can submit incidents for review"),
            ("publish_incident", "Can publish and unpublish incidents"),
            ("verify_incident", "Can change an incident's verification status"),
        ]
        constraints = [
            OneLineConstraint(condition=one_line_condition("title"), name="incident_title_one_line"),
            models.CheckConstraint(
                condition=Q(date_end__gte=F("date_start")),
                name="incident_dates_ordered",
                violation_error_code="dates_reversed",
                violation_error_message=DATES_REVERSED_MESSAGE,
            ),
            searched_text_bounded(field="description", name="incident_description_bounded"),
            models.CheckConstraint(
                condition=dates_fit_their_precision(),
                name="incident_dates_fit_their_precision",
                violation_error_code="dates_not_their_precision",
                violation_error_message=(
                    "The dates are not what their precision says: a Month is whole months, a Year whole years, "
                    "a Week at most seven days. Choose Range for other dates."
                ),
            ),
            *count_range_constraints("incident"),
            models.UniqueConstraint(fields=["public_id"], name="incident_public_id_unique"),
            models.CheckConstraint(
                condition=~Q(merged_into=F("id")),
                name="incident_not_merged_into_itself",
                violation_error_code="merged_into_itself",
                violation_error_message="An incident cannot be merged into itself.",
            ),
        ]
        indexes = [
            # Serves the default ordering of lists and the changelist (newest first).
            models.Index(fields=["-date_start", "-id"], name="incident_newest_first"),
            # Serves the date-range overlap filter used by every list, export and statistic.
            models.Index(fields=["date_start", "date_end"], name="incident_date_range"),
            # Serves `updated_since` for partner tools that sync incrementally.
            models.Index(fields=["updated_at", "id"], name="incident_updated"),
            # Serves the same for readers without Confidential access, who sync by their own time.
            models.Index(fields=["disclosed_updated_at", "id"], name="incident_disclosed_updated"),
            # And for the public, who sync by theirs (migration 0102).
            models.Index(fields=["public_updated_at", "id"], name="incident_public_updated"),
            # Serves the type filter.
            models.Index(fields=["incident_type", "date_start"], name="incident_type_date"),
            # Serves finding one incident's possible duplicates (incidents.duplicates): the unmerged
            # incidents of its type whose date ranges overlap its own, widened, however long ago a
            # long range started, which a B-tree on the start date can only find by reading every
            # earlier incident. The type in the index (btree_gist) reads only those of the type: an
            # incident dated by a year meets 6,700 incidents of every type at 100,000, 2,700 of its own.
            GistIndex(
                "incident_type",
                Func(F("date_start"), F("date_end"), Value("[]"), function="daterange", output_field=DateRangeField()),
                name="incident_type_date_span",
                condition=Q(merged_into__isnull=True),
            ),
            # Lets statistics over a date range (and the country/source filters' semi-joins) read
            # everything they need from this index alone, a third of the table's size, instead of
            # the table: an index-only scan of the incidents ending after `date_from`.
            models.Index(
                fields=["date_end", "date_start"],
                include=[
                    "id",
                    "review_state",
                    "confidential",
                    "incident_type",
                    "people_count",
                    "people_count_min",
                    "people_count_max",
                    # Every read leaves merged incidents out (`visible_to`): without it, the scan
                    # would read the table to learn which rows are merged.
                    "merged_into",
                ],
                name="incident_stats_by_dates",
            ),
            # Serves following a merged incident to its survivor and the survivor's merges: the few
            # merged incidents only.
            models.Index(fields=["merged_into"], condition=Q(merged_into__isnull=False), name="incident_merged_into"),
            # Serves the duplicate pairs' visibility for staff without Confidential access: the
            # incidents hidden from them (`hidden_from`), a few in a hundred, read from the index
            # alone (5 ms at 200,000 incidents, where reading the table took 100-200 ms).
            models.Index(
                fields=["id"],
                condition=Q(confidential=True) | Q(merged_into__isnull=False),
                name="incident_hidden_from_staff",
            ),
            # Serves the admin Home's count of incidents waiting for review, a small part of the table,
            # from the index alone: what each reader may see of them is said by the two columns it
            # includes. Without them the count read each incident's row, scattered over half the
            # table's pages (278-387 ms for 89,599 of 1,000,000 incidents, against 9-17 ms).
            models.Index(
                fields=["id"],
                include=["confidential", "merged_into"],
                condition=Q(review_state="in_review"),
                name="incident_in_review",
            ),
            # Serves the public's view (published, not confidential, not merged: `visible_to`), newest
            # first, from the index alone: a search's page and its facets' sample walk it until they
            # have their matches, checking each in the search's table. Without `merged_into` here,
            # each step also read the incident's row (500 matches of a word in one incident of ten:
            # 31 ms of the walk at a million incidents, against 1 ms).
            models.Index(
                fields=["-date_start", "-id"],
                condition=Q(review_state="published", confidential=False, merged_into__isnull=True),
                name="incident_public_newest",
            ),
            # Serves the public's list by people (`ordering=-people_count`, and ascending, by
            # `people_estimate`; unknown counts sort as -1, as the list's cursor compares them:
            # IncidentViewSet), walked from either end until a page is full. Without it, every such
            # page sorted the 776,636 published incidents: 1.2-2.1 s at a million, and 15 s when a
            # filter left 40% of them.
            models.Index(
                people_estimate(unknown=-1),
                F("id"),
                condition=Q(review_state="published", confidential=False, merged_into__isnull=True),
                name="incident_public_by_people",
            ),
        ]
        triggers = [
            # An incident recorded with a type, or moved to it, waits for a write that changes the
            # type's slug (the kept export row's type cell) to commit, and that write for the
            # incident, as places do (IncidentPlace's `lock_place`): without it, an incident recorded
            # while a reviewer changed its type's slug kept the old slug in its export row, since the
            # reviewer's refresh could not see it and its own read the type as it was (migration
            # 0050). The foreign key's own check (FOR KEY SHARE) does not serve: it waits for a slug
            # change, a unique key's, but only at commit, after the refresh. An update that keeps the
            # type (every save writes every column) locks nothing: the reviewer's refresh covers the
            # incident then, and the two writes meet at its export row; a lock of the type as well,
            # taken after the transaction's earlier writes held that row, could only deadlock them.
            pgtrigger.Trigger(
                name="lock_type",
                when=pgtrigger.Before,
                operation=pgtrigger.Insert | pgtrigger.UpdateOf("incident_type_id"),
                level=pgtrigger.Row,
                condition=UNLESS_WRITING_IN_BULK,
                func="""
                IF TG_OP = 'UPDATE' AND NEW.incident_type_id = OLD.incident_type_id THEN
                    RETURN NEW;
                END IF;
                PERFORM FROM incidents_incidenttype WHERE id = NEW.incident_type_id FOR SHARE;
                RETURN NEW;
                """,
            ),
            # A listed incident that leaves some readers' view (returned to draft, made confidential,
            # merged, deleted) is recorded with the state they saw it in (IncidentWithdrawal), so that
            # an incremental sync tells their copies to drop it. In the database, whatever the door:
            # a bulk action, an import and a merge change these columns too. Never off in bulk: it
            # writes a row only for the rare change that takes an incident out of a view.
            pgtrigger.Trigger(
                name="record_withdrawal",
                when=pgtrigger.After,
                operation=pgtrigger.Delete | pgtrigger.UpdateOf("review_state", "confidential", "merged_into_id"),
                level=pgtrigger.Row,
                condition=pgtrigger.Condition("OLD.merged_into_id IS NULL"),
                func="""
                IF TG_OP = 'UPDATE' AND NOT (
                    (OLD.review_state = 'published' AND NEW.review_state <> 'published')
                    OR (NOT OLD.confidential AND NEW.confidential)
                    OR NEW.merged_into_id IS NOT NULL
                ) THEN
                    RETURN NULL;
                END IF;
                INSERT INTO incidents_incidentwithdrawal
                    (incident_id, public_id, review_state, confidential, withdrawn_at)
                VALUES (OLD.id, OLD.public_id, OLD.review_state, OLD.confidential, clock_timestamp());
                IF TG_OP = 'UPDATE' AND NEW.merged_into_id IS NULL THEN
                    -- The incidents merged into it left with it: a sync follows one to its survivor
                    -- only while it may see the survivor (`synced_to`). Each is recorded in the state
                    -- a reader had to see both in (the merged one's own, the survivor's before), so
                    -- that only those who could follow it are told. Merged into another, the
                    -- survivor stays one they follow, by its own state; deleted, it has none (PROTECT).
                    INSERT INTO incidents_incidentwithdrawal
                        (incident_id, public_id, review_state, confidential, withdrawn_at)
                    SELECT merged.id, merged.public_id,
                           CASE WHEN merged.review_state = 'published' THEN OLD.review_state
                                ELSE merged.review_state END,
                           merged.confidential OR OLD.confidential, clock_timestamp()
                    FROM incidents_incident AS merged
                    WHERE merged.merged_into_id = OLD.id;
                END IF;
                RETURN NULL;
                """,
            ),
            # A response follows its incidents (`ResponseQuerySet.visible_to`): one that leaves some
            # readers' view with an incident it is about (returned to draft, made confidential,
            # merged) is recorded as a source is (RecordWithdrawal), with the narrowest audience that
            # saw it while the incident was as it was (`response_audience`, migration 0105). Only
            # for a change that takes the incident out of a view, as `record_withdrawal`'s: every
            # other update passes the condition in a few comparisons. (Written out, not with
            # `incident_audience`: PostgreSQL checks a condition's functions exist when the trigger
            # is installed, which it is after a migration back to before them too.) Changes of the
            # links are recorded by their own table's triggers (migration 0105).
            pgtrigger.Trigger(
                name="record_response_withdrawals",
                when=pgtrigger.After,
                operation=pgtrigger.UpdateOf("review_state", "confidential", "merged_into_id"),
                level=pgtrigger.Row,
                condition=pgtrigger.Condition(
                    "OLD.merged_into_id IS NULL AND NEW.merged_into_id IS NOT NULL"
                    " OR NOT OLD.confidential AND NEW.confidential"
                    " OR OLD.review_state = 'published' AND NEW.review_state <> 'published'"
                ),
                func="""
                INSERT INTO incidents_recordwithdrawal (record_type, record_id, audience, withdrawn_at)
                SELECT 'response', link.response_id, seen.audience, clock_timestamp()
                FROM incidents_response_incidents AS link,
                    response_audience(
                        link.response_id, OLD.id,
                        incident_audience(OLD.review_state, OLD.confidential, OLD.merged_into_id)
                    ) AS seen (audience)
                WHERE link.incident_id = OLD.id AND seen.audience < response_audience(link.response_id);
                RETURN NULL;
                """,
            ),
        ]

    def __str__(self):
        return f"{self.public_id}: {self.title}" if self.public_id else self.title

    def clean(self):
        super().clean()
        validate_ranges(self)


class InvolvementRole(models.TextChoices):
    PERPETRATOR = "perpetrator", _("Perpetrator")
    RECEIVING_STATE = "receiving_state", _("Receiving state")
    FACILITATOR = "facilitator", _("Facilitator")
    OTHER = "other", _("Other")


@pghistory.track()
class Involvement(models.Model):
    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="involvements")
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="involvements")
    role = models.CharField(max_length=16, choices=InvolvementRole.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["incident", "organization", "role"], name="involvement_unique"),
        ]
        indexes = [
            # Serves the organization filter and "perpetrator" statistics.
            models.Index(fields=["organization", "role"], name="involvement_by_organization"),
        ]
        triggers = [
            # An organization named in an incident waits for a write that changes the organization
            # (its name, shown in the kept export row's perpetrators; its name, acronym or aliases,
            # in the search words) to commit, and that write for the involvement, as places do
            # (IncidentPlace's `lock_place`): without it, a perpetrator added while a reviewer renamed
            # the organization kept the old name in the incident's export row and search words
            # (migration 0050). A change of role too: the export row shows perpetrators only. An
            # update that keeps both (a saved incident's involvements are saved again) locks nothing,
            # as for an incident's type (Incident's `lock_type`).
            pgtrigger.Trigger(
                name="lock_organization",
                when=pgtrigger.Before,
                operation=pgtrigger.Insert | pgtrigger.UpdateOf("organization_id", "role"),
                level=pgtrigger.Row,
                condition=UNLESS_WRITING_IN_BULK,
                func="""
                IF TG_OP = 'UPDATE' AND (NEW.organization_id, NEW.role) = (OLD.organization_id, OLD.role) THEN
                    RETURN NEW;
                END IF;
                PERFORM FROM incidents_organization WHERE id = NEW.organization_id FOR SHARE;
                RETURN NEW;
                """,
            ),
        ]

    def __str__(self):
        return f"{self.organization} ({self.get_role_display()})"


class Sex(models.TextChoices):
    FEMALE = "female", _("Female")
    MALE = "male", _("Male")
    MIXED = "mixed", _("Mixed")
    UNKNOWN = "unknown", _("Unknown")


class AgeGroup(models.TextChoices):
    CHILD = "child", _("Children")
    ADULT = "adult", _("Adults")
    MIXED = "mixed", _("Mixed")
    UNKNOWN = "unknown", _("Unknown")


@pghistory.track()
class VictimGroup(TextInNormalForm, models.Model):
    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="victim_groups")
    count = models.PositiveIntegerField(null=True, blank=True)
    sex = models.CharField(max_length=8, choices=Sex.choices, default=Sex.UNKNOWN)
    age_group = models.CharField(max_length=8, choices=AgeGroup.choices, default=AgeGroup.UNKNOWN)
    nationality = CountryField(blank=True)
    description = models.CharField(max_length=500, blank=True, help_text='e.g. "mostly women"')

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(count__isnull=True) | Q(count__gte=0),
                name="victim_group_count_not_negative",
                violation_error_code="negative_count",
                violation_error_message="Counts of people cannot be negative.",
            )
        ]

    def __str__(self):
        return self.description or f"{self.count or '?'} ({self.get_sex_display()}, {self.get_age_group_display()})"


class SourceConnection(models.TextChoices):
    VICTIM = "victim", _("Victim")
    WITNESS = "witness", _("Witness")
    INFORMANT = "informant", _("Informant")
    THIRD_PARTY = "third_party", _("Third party")
    OFFICIAL = "official", _("Official")
    UNKNOWN = "unknown", _("Unknown")


class OneEndDateLabel(Func):
    """Calls the SQL function of migration 0075: a claim's dates that give one end alone, as the
    source says them ("Since March 2020", "Before 9 October 2023": an end on 8 October 2023, at a
    Day), at the precision of that end, in the words of `DateLabel`'s; "" without dates."""

    function = "claim_one_end_date_label"
    output_field = models.TextField()


# A claim's dates as people write them: both ends as an incident's (`DateLabel`), one end alone as
# the sources say it (`OneEndDateLabel`). In SQL, as the incident's, so that every door reads one column.
CLAIM_DATE_LABEL = models.Case(
    models.When(
        Q(date_start__isnull=False, date_end__isnull=False),
        then=DateLabel("date_start", "date_end", "date_precision"),
    ),
    default=OneEndDateLabel("date_start", "date_end", "date_precision"),
)

CLAIM_DATE_PRECISION_HELP = (
    "How precisely the source dates it: as an incident's (day, week, month, year, range or unknown) for "
    "two dates; day, month or year for one end alone, a source's “since March 2020” (month, a start "
    "alone) or “before 9 October 2023” (day, an end alone: 8 October, the last day it allows); unknown "
    "without dates. Left out (or blank), it is read from the dates: none, unknown; one day or one end "
    "alone, day; whole years, year; whole months, month; any other span, range."
)


# The history keeps the claim's label as a plain copy of the stored value, as the incident's
# (migration 0055): the generated column of an event table was planned anew by each trigger's run.
@pghistory.track(attrs={"date_label": models.TextField()})
class Claim(TextInNormalForm, QualifierFromFigures, PrecisionFromDates, CheckConstraintsInOneQuery, TimestampedModel):
    """What one source says about one incident, kept as the source said it."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="claims")
    source = models.ForeignKey(Source, on_delete=models.PROTECT, related_name="claims")
    people_count = models.PositiveIntegerField(null=True, blank=True)
    people_count_min = models.PositiveIntegerField(null=True, blank=True)
    people_count_max = models.PositiveIntegerField(null=True, blank=True)
    count_qualifier = models.CharField(
        max_length=8,
        choices=CountQualifier.choices,
        blank=True,
        default="",
        help_text=COUNT_QUALIFIER_HELP,
    )
    date_start = models.DateField(
        null=True, blank=True, help_text="First day of the dates the source gives; empty for none, or for an end alone."
    )
    date_end = models.DateField(
        null=True,
        blank=True,
        help_text="Last day of those dates (inclusive); empty for none, or for a start alone (“since”).",
    )
    date_precision = models.CharField(
        max_length=8,
        choices=DatePrecision.choices,
        blank=True,
        default="",
        help_text=CLAIM_DATE_PRECISION_HELP,
    )
    date_label = models.GeneratedField(expression=CLAIM_DATE_LABEL, output_field=models.TextField(), db_persist=True)
    excerpt = models.TextField(
        blank=True, help_text="The source's own words.", validators=[MaxLengthValidator(SEARCHED_TEXT_MAX_LENGTH)]
    )
    locator = models.CharField(max_length=255, blank=True, help_text="Page, paragraph or timestamp.")
    source_connection = models.CharField(
        max_length=12,
        choices=SourceConnection.choices,
        default=SourceConnection.UNKNOWN,
        # The label alone left analysts guessing whose connection to what: HRW's report relaying
        # a missionary's account is Third party, the missionary's own testimony Informant.
        help_text="How the source knows: as a victim or a witness; as an informant passing on what they saw "
        "or were told; as an official speaking for a state; or as a third party relaying others (a news "
        "article, an NGO report).",
    )
    confidential = models.BooleanField(default=False)
    merge_conflict = models.BooleanField(
        default=False,
        # In the database too, so writers that name their columns (COPY by the bulk import and the
        # demo generator) need not know of it.
        db_default=False,
        help_text="Moved here by a merge while the incident already had a claim of this source: both are kept; "
        "compare them, remove or correct one, then clear this mark.",
    )

    objects = ClaimQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        constraints = [
            # One public claim and one confidential claim per source and incident: what an informant
            # told in confidence stands beside what the same outlet published, and a writer who
            # cannot see the confidential one can still record the public one. A single constraint
            # would refuse that write only when the hidden claim exists, and so reveal it.
            models.UniqueConstraint(
                fields=["incident", "source"],
                # A merge keeps both claims of a source that the two incidents had, marked to be
                # resolved (merge_conflict), rather than drop one.
                condition=Q(confidential=False, merge_conflict=False),
                name="claim_one_public_per_incident_source",
                violation_error_message="This source already has a claim on this incident.",
            ),
            models.UniqueConstraint(
                fields=["incident", "source"],
                condition=Q(confidential=True, merge_conflict=False),
                name="claim_one_confidential_per_incident_source",
                violation_error_message="This source already has a confidential claim on this incident.",
            ),
            models.CheckConstraint(
                condition=Q(date_start__isnull=True) | Q(date_end__isnull=True) | Q(date_end__gte=F("date_start")),
                name="claim_dates_ordered",
                violation_error_code="dates_reversed",
                violation_error_message=DATES_REVERSED_MESSAGE,
            ),
            models.CheckConstraint(
                # Left blank, it is read from the dates before it is written (`PrecisionFromDates`).
                condition=Q(date_precision__in=DatePrecision.values),
                name="claim_date_precision_known",
                violation_error_code="date_precision_unknown_value",
                violation_error_message="The date's precision is not one of day, week, month, year, range or unknown.",
            ),
            searched_text_bounded(field="excerpt", name="claim_excerpt_bounded"),
            models.CheckConstraint(
                condition=claim_dates_fit_their_precision(),
                name="claim_dates_fit_their_precision",
                violation_error_code="dates_not_their_precision",
                violation_error_message=(
                    "The dates are not what their precision says: a Month is whole months, a Year whole years, "
                    "a Week at most seven days; one end alone is a Day, Month or Year; no date is Unknown."
                ),
            ),
            *count_range_constraints("claim"),
        ]
        indexes = [
            # Serves the source filter (incidents a source reports on).
            models.Index(fields=["source", "incident"], name="claim_by_source"),
        ]
        triggers = [
            # The kept rows that show a claim's source to readers without the confidential permission
            # (export rows, search words) are refreshed by statement triggers that read the source as
            # their transaction sees it. A claim added while another transaction made its source
            # confidential read the source as public, and that transaction's refresh did not see the
            # new claim: the informant's title stayed in the public export and search words until
            # the incident's next write. With the source share-locked first, the two writes wait for
            # each other and the later one's refresh sees the earlier one's commit.
            # Every source up the source's `cites` is locked too, as far as `source_origin` follows
            # them: whether a relayed source is confidential decides how many independent origins
            # the claim's incident has for readers who may not see it (migration 0043), and an
            # incident recorded while its outlets' source was made confidential kept the count of
            # a public one (migration 0047). A save that keeps the source (every save writes every
            # column: an incident saved with its claims as they were) locks nothing, as for the
            # other links (Incident's `lock_type`): the other writer's refresh covers the claim,
            # which cites the source already, and it waited for the incident's export row that this
            # transaction holds, so a lock here closed a cycle that PostgreSQL ended by stopping
            # one of the two (migration 0053). Off in bulk, as `lock_place` is: an import's 200,000
            # claims of 50 sources ran it 200,000 times, a query or more each (a third of the
            # claims' COPY); writers in bulk lock every source their claims cite, and those up the
            # chains, at once (`incident_sources_lock`, migration 0077), before reading anything
            # of them.
            pgtrigger.Trigger(
                name="lock_source",
                when=pgtrigger.Before,
                operation=pgtrigger.Insert | pgtrigger.UpdateOf("source_id"),
                level=pgtrigger.Row,
                condition=UNLESS_WRITING_IN_BULK,
                declare=[
                    ("cited", "bigint"),
                    ("kept", "bigint"),
                    ("steps", "integer := 0"),
                    ("next_keep", "integer := 1"),
                ],
                # To the chain's end however long, or round a loop until back at the source kept at
                # the last power of two steps, as `source_origin` finds a loop (migration 0069).
                func="""
                IF TG_OP = 'UPDATE' AND NEW.source_id = OLD.source_id THEN
                    RETURN NEW;
                END IF;
                kept := NEW.source_id;
                SELECT cites_id INTO cited FROM incidents_source WHERE id = NEW.source_id FOR SHARE;
                WHILE cited IS NOT NULL AND cited <> kept LOOP
                    steps := steps + 1;
                    IF steps = next_keep THEN
                        kept := cited;
                        steps := 0;
                        next_keep := next_keep * 2;
                    END IF;
                    SELECT cites_id INTO cited FROM incidents_source WHERE id = cited FOR SHARE;
                END LOOP;
                RETURN NEW;
                """,
            ),
            # The search words hold the name, acronym and aliases of the publisher of each claim's
            # source: a claim added while a reviewer renamed the publisher kept the old name in them
            # (migration 0050). The source is read locked, as `lock_source` does, whichever trigger
            # runs first: a source's change of publisher cannot then slip in between, and the
            # publisher locked is the one the refresh reads. Off in bulk, as `lock_place` is; nothing
            # on a save that keeps the source, as for an incident's type (Incident's `lock_type`).
            pgtrigger.Trigger(
                name="lock_publisher",
                when=pgtrigger.Before,
                operation=pgtrigger.Insert | pgtrigger.UpdateOf("source_id"),
                level=pgtrigger.Row,
                condition=UNLESS_WRITING_IN_BULK,
                declare=[("publisher", "bigint")],
                func="""
                IF TG_OP = 'UPDATE' AND NEW.source_id = OLD.source_id THEN
                    RETURN NEW;
                END IF;
                SELECT publisher_id INTO publisher FROM incidents_source WHERE id = NEW.source_id FOR SHARE;
                PERFORM FROM incidents_organization WHERE id = publisher FOR SHARE;
                RETURN NEW;
                """,
            ),
        ]

    def __str__(self):
        return f"{self.source} on {public_id_of(self.incident_id)}"

    @property
    def needs_confidential_access(self) -> bool:
        """Whether only readers with the confidential permission see this claim: a confidential one,
        or one of a confidential source (what ClaimQuerySet.confidential selects)."""
        return self.confidential or self.source.confidential

    def clean(self):
        super().clean()
        validate_ranges(self, one_end=True)


class RevisionState(models.TextChoices):
    PENDING = "pending", "Pending"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"


@pghistory.track()
class IncidentRevision(TextInNormalForm, TimestampedModel):
    """A change to a published incident proposed by someone who may not publish: the public keeps
    seeing the published incident until a Reviewer accepts the revision (which applies it as one
    update) or rejects it. `changes` holds what the proposer sent, in the shape `incident_update`
    takes (`data`, and `places`, `claims`, `victim_groups`, `involvements` where given), with
    records by id."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="revisions")
    base_version = models.PositiveIntegerField(help_text="The incident's version the proposal was made from.")
    changes = models.JSONField(encoder=DjangoJSONEncoder)
    proposed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+", editable=False
    )
    # The proposer could see confidential claims, so the proposal may carry them: only a Reviewer
    # who may see them decides it. Kept from the proposer's rights at the time, not from the data,
    # so whether a reviewer is offered the revision never depends on what is hidden from them.
    needs_confidential_access = models.BooleanField(default=False, editable=False)
    state = models.CharField(max_length=8, choices=RevisionState.choices, default=RevisionState.PENDING)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", editable=False
    )
    decided_at = models.DateTimeField(null=True, blank=True, editable=False)
    decision_note = models.TextField(blank=True, help_text="Why it was accepted or rejected.")

    objects = IncidentRevisionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(state=RevisionState.PENDING, decided_at__isnull=True)
                | (~Q(state=RevisionState.PENDING) & Q(decided_at__isnull=False)),
                name="incident_revision_decided_when_not_pending",
            ),
        ]
        indexes = [
            # Serves the reviewers' queue (pending first) and each incident's pending revisions.
            models.Index(fields=["incident"], condition=Q(state="pending"), name="incident_revision_pending"),
        ]

    def __str__(self):
        return f"Revision {self.pk} of {self.incident.public_id} ({self.get_state_display().lower()})"

    @property
    def versions_told(self) -> VersionFields:
        """The incident's versions `base_version` is one of: those its proposer was told, or, made
        of what only readers with Confidential access see, theirs (`querysets.version_fields`)."""
        return versions_told(every_change=self.needs_confidential_access)

    @property
    def incident_version(self) -> int:
        """Its incident's version now, counted as `base_version` is (`versions_told`)."""
        return getattr(self.incident, self.versions_told.version)

    @property
    def is_stale(self) -> bool:
        """Whether its incident changed since it was proposed, as its proposer is told changes:
        accepting it is then refused (services.StaleRevision)."""
        return self.incident_version != self.base_version

    def proposal_withheld_from(self, user) -> bool:
        """Whether who proposed it and when are kept from `user`: a merge decided in confidence
        (or its undo) proposed it, whose own record withholds its Reviewer and time (`NoteWrittenInConfidence`).
        Read from `IncidentRevisionQuerySet.visible_to`'s `proposal_withheld` where it was listed so
        (a page's revisions at once), else with one query."""
        if can_see_confidential(user):
            return False
        if hasattr(self, "proposal_withheld"):
            return self.proposal_withheld
        return IncidentMerge.objects.filter(Q(revision=self) | Q(revision_back=self), note_confidential=True).exists()

    def decision_withheld_from(self, user) -> bool:
        """Whether who decided it and when are kept from `user`: the undo of a merge decided in
        confidence rejected it, whose own record withholds its Reviewer and time. Read as
        `proposal_withheld_from` is (`IncidentRevisionQuerySet.visible_to`'s `decision_withheld`)."""
        if can_see_confidential(user) or self.decided_at is None:
            return False
        if hasattr(self, "decision_withheld"):
            return self.decision_withheld
        return IncidentMerge.objects.filter(revision=self, undone_at=self.decided_at, note_confidential=True).exists()


class IncidentSubmission(models.Model):
    """A request that added or changed an incident, by the key its sender gave it, so that the same
    request sent again writes nothing and is answered as the first: the admin's incident page (one
    key each time it is shown: a Save pressed twice, or again after the browser's Back) and an API
    client's `Idempotency-Key` (a partner tool retrying a POST whose answer it did not get).
    `services.incident_create` and `incident_update` write it with what they write, in one
    transaction; the unique key (a new incident's) or the incident's lock (a change's) makes a second
    request sent while the first is saved wait for it, then find it."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="incident_submissions")
    key = models.CharField(max_length=255)
    # What was sent (sha256), told apart from another request under a key already used.
    fingerprint = models.CharField(max_length=64)
    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="submissions")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="incident_submission_once"),
        ]

    def __str__(self):
        return f"{self.key} ({self.incident_id})"


class IncidentSearchDocument(models.Model):
    """The words that find an incident, kept by PostgreSQL in the statement that changes them
    (triggers of migration 0019), so that one index answers the whole search (incidents/search.py).

    They are its public id, title and description; the names and alternate names of its places; the
    names, acronyms and aliases of the organizations involved; and, for each claim, the excerpt, the
    source's title and the source publisher's names. `disclosed` leaves out the claims a reader
    without the confidential permission may not see (a confidential claim, or a claim of a
    confidential source); `complete` holds them too, and is NULL when there are none to hold
    (migration 0041: nine incidents in ten, whose `complete` was a copy of `disclosed`). Every word
    of an incident is therefore `complete` where it is kept, `disclosed` where not: the lookup
    `complete__or_disclosed` (CompleteOrDisclosedMatch)."""

    # Deleted with its incident by the same triggers (DO_NOTHING: Django need not look for it).
    incident = models.OneToOneField(
        Incident, on_delete=models.DO_NOTHING, primary_key=True, related_name="search_document"
    )
    disclosed = SearchVectorField()
    complete = SearchVectorField(null=True)

    class Meta:
        indexes = [
            # Serve the search for readers without, and with, the confidential permission (the
            # latter both: CompleteOrDisclosedMatch).
            GinIndex(fields=["disclosed"], name="incident_search_disclosed"),
            GinIndex(fields=["complete"], name="incident_search_complete"),
        ]

    def __str__(self):
        return f"Search words of incident {self.incident_id}"


class CompleteOrDisclosedMatch(SearchVectorExact):
    """`complete__or_disclosed=query`: the search query matches an incident's every word, its
    `complete` words where they are kept and its `disclosed` words where they are not (NULL: no
    confidential claim word, so the two would be the same). Written as two conditions, `complete
    @@ query OR (complete IS NULL AND disclosed @@ query)`, rather than `coalesce(complete,
    disclosed) @@ query`, so that each column's GIN index serves its half (a BitmapOr) and
    PostgreSQL estimates the matches from each column's statistics."""

    lookup_name = "or_disclosed"

    def as_sql(self, compiler, connection):
        complete, complete_params = self.process_lhs(compiler, connection)
        query, query_params = self.process_rhs(compiler, connection)
        disclosed_column = Col(self.lhs.alias, IncidentSearchDocument._meta.get_field("disclosed"))
        disclosed, disclosed_params = compiler.compile(disclosed_column)
        sql = f"({complete} @@ {query} OR ({complete} IS NULL AND {disclosed} @@ {query}))"
        return sql, (*complete_params, *query_params, *complete_params, *disclosed_params, *query_params)


IncidentSearchDocument._meta.get_field("complete").register_lookup(CompleteOrDisclosedMatch)


class IncidentExportRow(models.Model):
    """An incident's row of the CSV export, each cell as the export writes it (incidents/exports.py),
    kept by PostgreSQL in the statement that changes it (triggers of migration 0028), so that an
    export is a COPY of these rows rather than a computation of them (issue 19: within 2x a COPY of
    the same bytes from a plain table).

    Typed columns (dates, numbers) are formatted by COPY as the export always did; the others hold
    the rendered text: multi-valued cells joined and quoted, free text with formulas neutralised.
    NULL and "" differ in a CSV (an empty field, and `""`), so a cell that may be blank is NULL.
    The cells built from claims are kept once per audience: `disclosed_*` from the claims a reader
    without the confidential permission may see (`ClaimQuerySet.disclosed_to`), `complete_*` from
    all of them; which one a reader gets is decided in one place, `exports.claim_cells`."""

    # Deleted with its incident by the same triggers (DO_NOTHING: Django need not look for it).
    incident = models.OneToOneField(Incident, on_delete=models.DO_NOTHING, primary_key=True, related_name="export_row")
    public_id = models.TextField()
    title = models.TextField()
    type = models.TextField()
    # Not a cell: the incident's type, so that an export by type selects the rows of its types' ids
    # (exports.kept_rows), which PostgreSQL can count from its statistics, where their slugs read in
    # the statement could not be (migration 0040). A copy of the incident's own foreign key, kept
    # by the same refresh as the cells; not a foreign key itself, which would check each row written
    # again.
    incident_type_id = models.BigIntegerField()
    date_start = models.DateField()
    date_end = models.DateField()
    date_precision = models.TextField()
    date_label = models.TextField()
    people_count = models.IntegerField(null=True)
    people_count_min = models.IntegerField(null=True)
    people_count_max = models.IntegerField(null=True)
    count_qualifier = models.TextField()
    countries = models.TextField(null=True)  # noqa: DJ001 (NULL is a blank cell, "" would be `""`)
    places = models.TextField(null=True)  # noqa: DJ001
    perpetrators = models.TextField(null=True)  # noqa: DJ001
    verification = models.TextField()
    review_state = models.TextField()
    merged_into = models.TextField(null=True)  # noqa: DJ001
    disclosed_source_count = models.IntegerField()
    disclosed_sources = models.TextField(null=True)  # noqa: DJ001
    disclosed_claim_min = models.IntegerField(null=True)
    disclosed_claim_max = models.IntegerField(null=True)
    complete_source_count = models.IntegerField()
    complete_sources = models.TextField(null=True)  # noqa: DJ001
    complete_claim_min = models.IntegerField(null=True)
    complete_claim_max = models.IntegerField(null=True)
    # Not a cell: the incident's own flag, so that the kept rows answer the visibility of a reader
    # without the confidential permission themselves (exports.kept_rows).
    confidential = models.BooleanField()
    # Not cells: what the record of an export by a reader with the confidential permission lists
    # (incidents.access.record_export_access), the claims `ClaimQuerySet.confidential()` selects among
    # this incident's and the confidential sources among theirs, read from the few rows that hold
    # any (migration 0030) rather than from every claim of every exported incident. NULL for none.
    confidential_claim_ids = ArrayField(models.BigIntegerField(), null=True)
    confidential_source_ids = ArrayField(models.BigIntegerField(), null=True)
    # Not cells: the incident's independent origins (`IncidentQuerySet.with_independent_origins`) per
    # audience, as `disclosed_*` and `complete_*` (migration 0043), so that an export filtered by
    # `min_origins` selects the rows by their own count (exports.kept_rows) rather than counting
    # every visible incident's origins at export time.
    disclosed_origins = models.IntegerField()
    complete_origins = models.IntegerField()
    updated_at = models.TextField()
    version = models.IntegerField()
    # The incident's own `disclosed_*` version and change time, the cells of readers without
    # Confidential access (`exports.version_cells`, migration 0095), and its `public_*`, the
    # public's (migration 0102).
    disclosed_updated_at = models.TextField()
    disclosed_version = models.IntegerField()
    public_updated_at = models.TextField()
    public_version = models.IntegerField()

    class Meta:
        indexes = [
            # Serves the order of every export (newest first) without a sort: the rows are stored in
            # it, so reading them through this index reads the table nearly in turn (2.5 s for a
            # million rows, where a sort of their 370 MB spilled to disk: 13-20 s on a busy machine),
            # and a date range's rows in order from its range of dates (exports.kept_rows). It also
            # holds the columns the common filters and every reader's visibility test, and those the
            # record of an export counts (access.record_export_access), so that the record reads
            # this index alone, never the rows (40 ms against 170-240 ms for a date and a country
            # at 1,000,000 incidents). Not the confidential claims' arrays, of any length (an index
            # entry holds at most 2.7 kB): `complete_source_count > disclosed_source_count` says
            # which rows hold some, read then from `export_row_confidential`.
            models.Index(
                fields=["-date_start", "-incident"],
                include=[
                    "date_end",
                    "countries",
                    "merged_into",
                    "review_state",
                    "confidential",
                    "disclosed_source_count",
                    "complete_source_count",
                    # A sync's bound (exports.kept_time): the record of a full-history sync read
                    # the rows for it, 0.52 s against 0.15 s. Indexed anyway (`export_row_updated`),
                    # so a change of it was never a heap-only update.
                    "updated_at",
                    # `min_origins` (exports.kept_rows), for the same record (migration 0043).
                    "disclosed_origins",
                    "complete_origins",
                ],
                name="export_row_newest",
            ),
            # Serves a filtered export's date range (exports.KeptSpanHolds): the kept rows of the
            # incidents that started before it and last into it.
            GistIndex(
                Func(F("date_start"), F("date_end"), Value("[]"), function="daterange", output_field=DateRangeField()),
                name="export_row_span",
            ),
            # Serves an incremental sync's export (`updated_since`, exports._kept_condition): the
            # kept rows changed since a recent bound, found here and sorted, where the order index
            # would read every row to find them (0.43 s for none at 1,000,000 incidents). The cell
            # is a fixed-width UTC text compared byte by byte (collation "C"), whatever the
            # database's collation.
            models.Index(Collate("updated_at", "C"), name="export_row_updated"),
            # Serves the same for readers without Confidential access (migration 0095), and the public
            # (migration 0102).
            models.Index(Collate("disclosed_updated_at", "C"), name="export_row_disclosed_updated"),
            models.Index(Collate("public_updated_at", "C"), name="export_row_public_updated"),
            # Serves an export by incident type (exports.kept_rows): a type's rows, newest first.
            # Without the order index's included columns, measured both ways at 1,000,000
            # incidents: with them, the record of a confidential reader's export by a rare type
            # (access.record_export_access) read this index alone, but the export reads the same
            # rows right after, so it gained little (0.15-0.35 s against 0.17-0.31 s), and the type's
            # rows that started before a date range, found by a third of this index ANDed with the
            # date range's index, took 100 ms to find rather than 15 ms in 110 MB rather than 39 MB
            # (a common type and six years: 0.46-0.59 s against 0.35-0.37 s).
            models.Index(fields=["incident_type_id", "-date_start", "-incident"], name="export_row_type"),
            # Serves a sync's merged incidents (exports.kept_rows), few, newest first.
            models.Index(
                fields=["-date_start", "-incident"], condition=Q(merged_into__isnull=False), name="export_row_merged"
            ),
            # Serves the record of an export (access.record_export_access): the confidential claims
            # and sources of the exported rows that hold some, read from this index alone.
            models.Index(
                fields=["incident"],
                include=["confidential_claim_ids", "confidential_source_ids"],
                condition=Q(confidential_claim_ids__isnull=False),
                name="export_row_confidential",
            ),
        ]

    def __str__(self):
        return f"Export row of incident {self.incident_id}"


class ResponseKind(models.TextChoices):
    STATEMENT = "statement", _("Statement")
    FORMAL_PROTEST = "formal_protest", _("Formal protest")
    DIPLOMATIC_PROTEST = "diplomatic_protest", _("Diplomatic protest")
    CALL_TO_ACTION = "call_to_action", _("Call to action")
    RESOLUTION = "resolution", _("Resolution")
    REPORT = "report", _("Report")
    LEGAL_ACTION = "legal_action", _("Legal action")


@pghistory.track(*HISTORY_BUT_UPDATES, HISTORY_UPDATES_BUT_KEPT_VERSIONS, exclude=KEPT_VERSION_FIELDS)
class Response(TextInNormalForm, CreatedPerAudience, PublicVersions, VersionsPerAudience, TimestampedModel):
    """An organization's reaction to one or more incidents."""

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="responses")
    kind = models.CharField(max_length=20, choices=ResponseKind.choices)
    date = models.DateField(validators=[validate_day_begun])
    description = models.TextField(blank=True)
    incidents = models.ManyToManyField(Incident, related_name="responses", blank=True)
    source = models.ForeignKey(Source, on_delete=models.PROTECT, null=True, blank=True, related_name="responses")

    objects = ResponseQuerySet.as_manager()

    class Meta:
        ordering = ["-date", "id"]
        indexes = [
            # Serve each audience's incremental sync of responses (`updated_since`,
            # `ordering=updated_at`), by the change time it is told (`version_fields`), from that time
            # on in the pages' order; whether the reader may see each is asked of its links.
            models.Index(fields=["updated_at", "id"], name="response_changed"),
            models.Index(fields=["disclosed_updated_at", "id"], name="response_disclosed_changed"),
            models.Index(fields=["public_updated_at", "id"], name="response_public_changed"),
        ]
        triggers = [
            # A response deleted leaves the view of every reader who saw it (RecordWithdrawal).
            # Django deletes its links first, which leaves it about no incident, as staff read one:
            # read so, a response about confidential incidents only was withdrawn from staff
            # without Confidential access, who never saw it (its id, and when). Its links removed
            # in this transaction (their history's events, stamped with its start) say who saw it
            # (migration 0107, which also leaves out a response its links' trigger sees made in it).
            pgtrigger.Trigger(
                name="record_withdrawal",
                when=pgtrigger.After,
                operation=pgtrigger.Delete,
                level=pgtrigger.Row,
                func="""
                INSERT INTO incidents_recordwithdrawal (record_type, record_id, audience, withdrawn_at)
                SELECT 'response', OLD.id, COALESCE(removed.audience, response_audience(OLD.id)), clock_timestamp()
                FROM (
                    SELECT min(incident_audience(incident.review_state, incident.confidential, incident.merged_into_id))
                    FROM incidents_responseincidentevent AS link
                    JOIN incidents_incident AS incident ON incident.id = link.incident_id
                    WHERE link.response_id = OLD.id AND link.pgh_label = 'delete' AND link.pgh_created_at = now()
                        AND NOT EXISTS (SELECT FROM incidents_response_incidents WHERE response_id = OLD.id)
                ) AS removed (audience);
                RETURN NULL;
                """,
            ),
        ]

    def __str__(self):
        return f"{self.organization}: {self.get_kind_display()} ({self.date:%Y-%m-%d})"


# Linking a response to incidents writes rows of the auto-created table behind Response.incidents;
# tracked too, so the audit trail shows when an incident was added to or removed from a response,
# and by whom. Its triggers are not in a migration (Django owns that table's schema): pgtrigger
# installs them after every migrate (PGTRIGGER_INSTALL_ON_MIGRATE).
pghistory.track(
    pghistory.InsertEvent(),
    pghistory.DeleteEvent(),
    model_name="ResponseIncidentEvent",
    app_label="incidents",
)(Response.incidents.through)


class RollupDimension(models.TextChoices):
    INCIDENT = "incident", "Incident"
    COUNTRY = "country", "Country"
    PERPETRATOR = "perpetrator", "Perpetrator"
    PLACE = "place", "Place"


# What the statistics read of a kept total besides its group: the filters they answer and the figures.
_ROLLUP_READ = [
    "start_month",
    "end_month",
    "incident_type",
    "verification",
    "incidents",
    "incidents_without_figure",
    "people_count",
    "people_count_known",
    "people_count_min",
    "people_count_min_known",
    "people_count_max",
    "people_count_max_known",
]


def _rollup_index(name: str, condition: Q, group: list[str], first: str | None = None) -> models.Index:
    """An index on the kept totals of one dimension (`condition`), keyed by whom they are shown to
    (`IncidentRollupQuerySet.visible_to`) and their group, that holds everything a statistic reads."""
    keys = [*([first] if first else []), "review_state", "confidential", *group]
    return models.Index(fields=keys, include=_ROLLUP_READ, condition=condition, name=name)


# The `perpetrator` dimension's `within_country` for incidents in no country (without a place with
# a country, or at a place without one), which no country code can be (migration 0056): what a
# perpetrator's statistics grouped by country show as "no country".
NO_COUNTRY = "-"


class IncidentRollup(models.Model):
    """Statistics kept ahead of time: the incidents and their people summed per start month, end
    month, type, verification, review state and confidentiality, and within that once overall
    (`incident`), per country of their places (`country`, once per pair of the incident's
    countries, so that a country filter can group by the other countries), per perpetrator (over
    all incidents, and within each country of theirs, migration 0031) and per place, each place
    counting the incidents at it or at any place inside it (once each).

    Written only by PostgreSQL (migrations 0011 and 0023), in the transaction that changes the incidents, so
    it never disagrees with them; read by `incidents.statistics` for the filters it can answer."""

    start_month = models.DateField()
    end_month = models.DateField()
    # References without foreign key constraints: the totals are brought up to date when a
    # transaction commits, after it may have deleted a type or an organization that its incidents
    # no longer use.
    incident_type = models.ForeignKey(
        IncidentType, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    verification = models.CharField(max_length=12, choices=Verification.choices)
    review_state = models.CharField(max_length=10, choices=ReviewState.choices)
    confidential = models.BooleanField()
    dimension = models.CharField(max_length=12, choices=RollupDimension.choices)
    # `country` dimension: the group, and the country whose incidents these are (an incident in
    # two countries gives the four pairs). Blank where an incident has no place with a country, and
    # in the other dimensions.
    country = models.CharField(max_length=2, blank=True)
    within_country = models.CharField(max_length=2, blank=True)
    # `perpetrator` dimension: the group; null for incidents without a perpetrator. Kept over all
    # incidents (`within_country` blank), within each country of theirs and within none (NO_COUNTRY).
    organization = models.ForeignKey(
        Organization, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, null=True, related_name="+"
    )
    # `place` dimension: the group, a place or a place that contains one of the incident's places.
    place = models.ForeignKey(
        Place, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, null=True, related_name="+"
    )
    # Plain integers, not positive ones: totals are updated by adding signed changes (INSERT … ON
    # CONFLICT DO UPDATE), and PostgreSQL checks a row's constraints on the proposed insert, a
    # negative change included, before it finds the row to update.
    incidents = models.IntegerField()
    # How many of them have no figure at all (no best estimate, minimum or maximum): they add no
    # people to the sums below, which a reader must know to read them as incomplete. Not told by
    # the counts of known figures: one incident with a minimum alone and one with a maximum alone
    # know as many bounds as one with both and one with none (migration 0074).
    incidents_without_figure = models.IntegerField()
    # The sums of the incidents' figures (the bounds falling back to the best estimate), and how
    # many incidents have one: over incidents none of which has a figure, the sum is unknown, not 0.
    people_count = models.BigIntegerField()
    people_count_known = models.IntegerField()
    people_count_min = models.BigIntegerField()
    people_count_min_known = models.IntegerField()
    people_count_max = models.BigIntegerField()
    people_count_max_known = models.IntegerField()

    objects = IncidentRollupQuerySet.as_manager()

    class Meta:
        constraints = [
            # Also what the totals are updated on.
            models.UniqueConstraint(
                fields=[
                    "start_month",
                    "end_month",
                    "incident_type",
                    "verification",
                    "review_state",
                    "confidential",
                    "dimension",
                    "country",
                    "within_country",
                    "organization",
                    "place",
                ],
                nulls_distinct=False,
                name="incident_rollup_cell",
            ),
        ]
        indexes = [
            # Totals that no incident counts in any more are removed after each update.
            models.Index(fields=["id"], condition=Q(incidents=0), name="incident_rollup_empty"),
            # Each statistic reads the totals of one dimension that its reader may see: a tenth to a
            # third of the table, spread over nearly all of its pages. These indexes hold every
            # column those queries read, so PostgreSQL answers them from the index alone (an
            # index-only scan) instead of reading the table. On a million incidents: by perpetrator
            # 194 → 86 ms, by country within a country 195 → 58 ms, by year 59 → 33 ms (p50).
            _rollup_index("incident_rollup_overall", Q(dimension=RollupDimension.INCIDENT), []),
            # By country: each incident once per country (the pairs of a country with itself)...
            _rollup_index(
                "incident_rollup_per_country",
                Q(dimension=RollupDimension.COUNTRY, within_country=F("country")),
                ["country"],
            ),
            # ...or, with a country filter, the pairs of that country with each other.
            _rollup_index(
                "incident_rollup_in_country", Q(dimension=RollupDimension.COUNTRY), ["country"], first="within_country"
            ),
            # By perpetrator, over all incidents (within no country) or within one country.
            _rollup_index(
                "incident_rollup_by_perpetrator",
                Q(dimension=RollupDimension.PERPETRATOR),
                ["organization"],
                first="within_country",
            ),
            # Serves the place facet (the places inside one) and the place filter (one place's totals).
            _rollup_index("incident_rollup_by_place", Q(dimension=RollupDimension.PLACE), ["place"]),
        ]

    def __str__(self):
        return f"{self.dimension} {self.start_month:%Y-%m} to {self.end_month:%Y-%m}: {self.incidents} incidents"


class IncidentRollupEntry(models.Model):
    """One incident as `IncidentRollup` counts it now: when the incident, its places or its
    perpetrators change, this is what the totals take away before they add the incident anew.
    Written only by PostgreSQL (migrations 0011 and 0023)."""

    incident_id = models.BigIntegerField(primary_key=True)
    start_month = models.DateField()
    end_month = models.DateField()
    # A reference without a foreign key constraint, as IncidentRollup's: the same filters select both.
    incident_type = models.ForeignKey(
        IncidentType, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    verification = models.CharField(max_length=12)
    review_state = models.CharField(max_length=10)
    confidential = models.BooleanField()
    people_count = models.PositiveIntegerField(null=True)
    people_count_min = models.PositiveIntegerField(null=True)
    people_count_max = models.PositiveIntegerField(null=True)
    countries = ArrayField(models.CharField(max_length=2))
    perpetrators = ArrayField(models.BigIntegerField())
    # Its places and every place that contains one, each once.
    places = ArrayField(models.BigIntegerField(), default=list)

    objects = IncidentRollupQuerySet.as_manager()

    class Meta:
        indexes = [
            # Serve a perpetrator's statistics by perpetrator, and by country within a country
            # (`statistics._sharing`): its other groups are those of its incidents with more than
            # one perpetrator (or country), which these indexes alone find, however many incidents
            # the perpetrator has alone (or in one country). One index for both read a large
            # perpetrator's 120,000 incidents in two countries to find those with two perpetrators.
            GinIndex(fields=["perpetrators"], condition=Q(perpetrators__len__gt=1), name="rollup_entry_fellows"),
            GinIndex(fields=["perpetrators"], condition=Q(countries__len__gt=1), name="rollup_entry_abroad"),
        ]

    def __str__(self):
        return f"incident {self.incident_id} as counted"


class IncidentFacetTotal(models.Model):
    """The browse page's facets kept ahead of time: how many incidents there are per start and end
    *year*, type, verification, review state and confidentiality (the filters a facet page takes:
    its dates are years), overall, per country, per place and per perpetrator, each also within
    one country (`within_country`) or one place (`within_place`), which is what a facet shows
    once a country or a place is chosen. Counts only: facets show no people.

    `IncidentRollup`'s months made it nearly as fine as the incidents (at a million incidents,
    490,000 totals per country, 913,000 per place, read whole by a facet); per year a facet reads
    about 20,000 of 4.3 million, from one range of the unique index.
    Written only by PostgreSQL (migration 0029) in the same count as `IncidentRollup`, so it never
    disagrees with the incidents; read by `incidents.statistics.facet_statistics`."""

    start_year = models.SmallIntegerField()
    end_year = models.SmallIntegerField()
    # No foreign key constraints, as in IncidentRollup (counted at commit, after deletions).
    incident_type = models.ForeignKey(
        IncidentType, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    verification = models.CharField(max_length=12, choices=Verification.choices)
    review_state = models.CharField(max_length=10, choices=ReviewState.choices)
    confidential = models.BooleanField()
    # What the total groups by (its column below): nothing (`incident`), a country, a place, a perpetrator.
    dimension = models.CharField(max_length=12, choices=RollupDimension.choices)
    # Within which incidents: those in a country or at (or inside) a place; blank and null: all.
    # Within a country, the `country` dimension pairs it with each country of its incidents (its
    # incidents, each once, are its pair with itself).
    within_country = models.CharField(max_length=2, blank=True)
    within_place = models.ForeignKey(
        Place, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, null=True, related_name="+"
    )
    # The group: blank where an incident has no place with a country, and in other dimensions.
    country = models.CharField(max_length=2, blank=True)
    # A place or a place that contains one of the incident's places.
    place = models.ForeignKey(
        Place, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, null=True, related_name="+"
    )
    # Null in the `perpetrator` dimension: incidents without one.
    organization = models.ForeignKey(
        Organization, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, null=True, related_name="+"
    )
    # Signed, as IncidentRollup's figures: updated by adding signed changes.
    incidents = models.IntegerField()

    objects = IncidentRollupQuerySet.as_manager()

    class Meta:
        constraints = [
            # What the totals are updated on, and the one index every facet reads, from the index
            # alone (the count is included): the dimension and the scope, whom the totals are
            # shown to, then the group, so that a facet reads one range of it (one for each review
            # state staff may see): the totals it counts and no others.
            models.UniqueConstraint(
                fields=[
                    "dimension",
                    "within_place",
                    "within_country",
                    "review_state",
                    "confidential",
                    "country",
                    "place",
                    "organization",
                    "start_year",
                    "end_year",
                    "incident_type",
                    "verification",
                ],
                include=["incidents"],
                nulls_distinct=False,
                name="incident_facet_total",
            ),
        ]
        indexes = [
            # Totals that no incident counts in any more are removed after each update.
            models.Index(fields=["id"], condition=Q(incidents=0), name="incident_facet_total_empty"),
        ]

    def __str__(self):
        return f"{self.dimension} {self.start_year} to {self.end_year}: {self.incidents} incidents"


class AccessDoor(models.TextChoices):
    ADMIN = "admin", "Admin"
    API = "api", "API"
    CSV = "csv", "CSV download"
    COMMAND = "command", "Command"
    SITE = "site", "Public pages"


class ConfidentialAccess(models.Model):
    """One showing or export of confidential records to one person: who, when, through which door,
    and what (the confidential incidents, claims and sources shown; for an export, also its filters
    and how many rows it read). Written by `incidents.access.record_confidential_access`, one row per
    request whatever the number of records, and never changed or deleted: the database refuses it."""

    at = models.DateTimeField(auto_now_add=True)
    # Evidence of who read what: a person who read confidential records is deactivated, not deleted.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="confidential_accesses")
    door = models.CharField(max_length=8, choices=AccessDoor.choices)
    path = models.CharField(max_length=500, blank=True, help_text="The page or endpoint, or the command.")
    incident_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    claim_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    source_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    # The duplicate pairs and merges whose note, written in confidence (`NoteWrittenInConfidence`),
    # was shown. Empty by default in the database too: the page lists' SQL function (migration
    # 0033) writes only the columns before these.
    duplicate_pair_ids = ArrayField(
        models.BigIntegerField(), default=list, blank=True, db_default=RawSQL("'{}'::bigint[]", [])
    )
    merge_ids = ArrayField(models.BigIntegerField(), default=list, blank=True, db_default=RawSQL("'{}'::bigint[]", []))
    # Exports only: the filters as given, and the rows the export read.
    export_filters = models.JSONField(null=True, blank=True)
    row_count = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "confidential accesses"
        indexes = [
            # Serve "read by …" on a record's page (`access.reads_of`): the rows whose arrays hold it.
            GinIndex(fields=["incident_ids"], name="access_incident_ids"),
            GinIndex(fields=["claim_ids"], name="access_claim_ids"),
            GinIndex(fields=["source_ids"], name="access_source_ids"),
            # Serves the audit list, newest first, and its filter by person.
            models.Index(fields=["-at", "-id"], name="access_newest_first"),
            models.Index(fields=["user", "-at"], name="access_by_user"),
        ]
        # Like pghistory's PGHISTORY_APPEND_ONLY on the audit trail: a record of access that could be
        # edited or removed would prove nothing.
        triggers = [pgtrigger.Protect(name="append_only", operation=pgtrigger.Update | pgtrigger.Delete)]

    def __str__(self):
        return f"{self.user} via {self.door} at {self.at:%Y-%m-%d %H:%M} UTC"


RELEASE_NAME_PREFIX = "incident-tracker-"


class Release(models.Model):
    """A frozen, citable copy of the published data (`incidents.releases`), named
    `incident-tracker-YYYY.N`. Immutable: PostgreSQL refuses to change or delete a release or its
    files (migration 0018), so a citation always points at the same bytes."""

    year = models.PositiveSmallIntegerField()
    number = models.PositiveIntegerField(help_text="The release's number within its year, from 1.")
    name = models.GeneratedField(
        expression=Concat(
            Value(RELEASE_NAME_PREFIX),
            Cast("year", models.TextField()),
            Value("."),
            Cast("number", models.TextField()),
            output_field=models.TextField(),
        ),
        output_field=models.TextField(),
        db_persist=True,
    )
    as_of = models.DateTimeField(null=True, help_text="The latest change to a released incident.")
    incidents = models.PositiveIntegerField(help_text="How many incidents it holds.")
    # Frozen with it, as its README says it: made again from today's settings (the project's
    # author and title), a past release's list entry told researchers to cite it by words its own
    # files never held.
    citation = models.TextField(editable=False, help_text="How to cite it, as its README says.")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+", editable=False
    )

    class Meta:
        ordering = ["-year", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["year", "number"], name="release_year_number_unique"),
            models.UniqueConstraint(fields=["name"], name="release_name_unique"),
            models.CheckConstraint(condition=Q(number__gte=1), name="release_number_from_one"),
        ]

    def __str__(self):
        return self.name


class ReleaseFile(models.Model):
    """One file of a release, kept in PostgreSQL beside its release: written in the same
    transaction (never a release with half its files), backed up with the data, and served by any
    app server without shared storage. A file is bounded by `bytea`'s 1 GB, far above a million
    incidents' CSV."""

    release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="files")
    name = models.CharField(max_length=64, help_text="File name, e.g. incidents.csv.")
    media_type = models.CharField(max_length=64)
    content = models.BinaryField()
    sha256 = models.CharField(max_length=64, help_text="SHA-256 of the content, in hexadecimal.")
    size = models.PositiveBigIntegerField(help_text="Size of the content in bytes.")

    class Meta:
        ordering = ["release", "name"]
        constraints = [
            models.UniqueConstraint(fields=["release", "name"], name="release_file_name_unique"),
            # The checksums and sizes that the API and datapackage.json publish are the content's own.
            models.CheckConstraint(
                condition=Q(size=Func(F("content"), function="octet_length")), name="release_file_size"
            ),
            models.CheckConstraint(
                condition=Q(sha256=Func(Func(F("content"), function="sha256"), Value("hex"), function="encode")),
                name="release_file_sha256",
            ),
        ]

    def __str__(self):
        return f"{self.release_id}/{self.name}"


class ReleaseZip(models.Model):
    """The size and checksum of a release as one zip file (`releases.release_zip_chunks`): its
    files in a folder named for it, the whole release to cite and deposit as one file. The zip is
    not stored (it would double a release's room in the database): it is made again from the
    files at each download, always the same bytes, and these are its figures, written with the
    release (and for the releases made before, by migration 0116). Immutable, like its release."""

    release = models.OneToOneField(Release, on_delete=models.PROTECT, primary_key=True, related_name="zip")
    sha256 = models.CharField(max_length=64, help_text="SHA-256 of the zip file, in hexadecimal.")
    size = models.PositiveBigIntegerField(help_text="Size of the zip file in bytes.")

    def __str__(self):
        return f"{self.release_id}.zip"


class DuplicateDecision(models.TextChoices):
    PENDING = "pending", "Not reviewed"
    SAME = "same", "Same incident"
    DIFFERENT = "different", "Different incidents"
    UNSURE = "unsure", "Unsure"


# What a reader without Confidential access reads in place of a note written in confidence.
NOTE_WITHHELD = (
    "A note was written while a record it concerns was confidential; it is withheld from readers "
    "without Confidential access."
)
WHO_AND_WHEN_WITHHELD = (
    "Decided while a record it concerns was confidential: who decided, and when, is withheld from readers "
    "without Confidential access."
)


class NoteWrittenInConfidence:
    """For records with a `note`, who decided and when (`decided_fields`), and a `note_confidential`
    (a duplicate pair, a merge): recorded by someone with Confidential access while a record they
    concern was hidden from readers without that access (`duplicates.decided_in_confidence`), the
    note's words, who decided and when are kept from those readers, however public those records
    are now. A pair decided "same as informant K's account" while its incidents were confidential
    kept showing its note, once they were made public, to all staff; and its `decided_at`, a date
    before the incidents were public, with `decided_by`, a colleague with Confidential access,
    told them that the incidents existed, hidden, and who had read them. The decision itself
    stays: the queue works on it (a pair decided is not proposed again)."""

    decided_fields: tuple[str, ...] = ()

    def decided_withheld_from(self, user) -> bool:
        """Whether who decided, when, and the note are kept from `user`: the one rule for every door."""
        return self.note_confidential and not can_see_confidential(user)

    def note_withheld_from(self, user) -> bool:
        return bool(self.note) and self.decided_withheld_from(user)

    def note_read_by(self, user) -> str | None:
        """The note as `user` may read it: None when it is withheld from them (`NOTE_WITHHELD`)."""
        return None if self.note_withheld_from(user) else self.note


# Without `score` in the history: the machine works it out again at every rescoring, and a score
# worked out while the pair's incidents were confidential compared every claim's origin (an
# informant both relay): kept in the events, the pair's next event after they were made public
# (its withdrawal, a decision) showed it to staff without Confidential access. A score-only change
# records no event; decisions are recorded as ever.
@pghistory.track(exclude=["score"])
class DuplicatePair(TextInNormalForm, NoteWrittenInConfidence, models.Model):
    """Two incidents that may report one event, scored by `incidents.duplicates`, and what a
    reviewer decided about them. Kept once decided, so that "different" is never proposed again
    and every decision shows in the history."""

    incident_a = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="+")
    incident_b = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="+")
    score = models.FloatField(help_text="From 0 (nothing alike) to 1 (alike in every respect compared).")
    decision = models.CharField(max_length=10, choices=DuplicateDecision.choices, default=DuplicateDecision.PENDING)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", editable=False
    )
    decided_at = models.DateTimeField(null=True, blank=True, editable=False)
    note = models.TextField(blank=True, help_text="Why, for the history.")
    note_confidential = models.BooleanField(
        "decided in confidence",
        default=False,
        editable=False,
        help_text="Decided while one of the incidents, or a claim of theirs, was confidential: the note, who "
        "decided and when are withheld from readers without Confidential access.",
    )

    objects = DuplicatePairQuerySet.as_manager()

    decided_fields = ("decided_by", "decided_at")

    class Meta:
        ordering = ["-score", "id"]
        constraints = [
            # One row per pair, whichever incident was scored first.
            models.CheckConstraint(condition=Q(incident_a__lt=F("incident_b")), name="duplicate_pair_ordered"),
            models.UniqueConstraint(fields=["incident_a", "incident_b"], name="duplicate_pair_unique"),
            models.CheckConstraint(condition=Q(score__gte=0, score__lte=1), name="duplicate_pair_score_range"),
            models.CheckConstraint(
                condition=Q(decision=DuplicateDecision.PENDING, decided_at__isnull=True)
                | (~Q(decision=DuplicateDecision.PENDING) & Q(decided_at__isnull=False)),
                name="duplicate_pair_decided_when_not_pending",
            ),
        ]
        indexes = [
            # Serve the review queue's page, best score first then id as it lists them, read in that
            # order and stopped after its 100 rows (a LIMIT, whatever the number of pairs): the pairs
            # that wait (`DuplicatePairQuerySet.waiting`), whose incidents a count of them reads
            # from the index alone; and every pair, for the list of every decision and the API's.
            models.Index(
                fields=["-score", "id"],
                include=["incident_a", "incident_b"],
                condition=Q(decision__in=WAITING_DECISIONS),
                name="duplicate_pair_waiting",
            ),
            models.Index(fields=["-score", "id"], name="duplicate_pair_by_score"),
            # Serves finding an incident's pairs from its second side (the unique index serves the first).
            models.Index(fields=["incident_b"], name="duplicate_pair_by_b"),
        ]

    def __str__(self):
        return f"{public_id_of(self.incident_a_id)} ~ {public_id_of(self.incident_b_id)} ({self.score:.2f})"

    @property
    def decision_read(self) -> str:
        """What a page deciding the pair was opened at, for `duplicates.duplicate_pair_decide` to
        compare: its decision, who made it and when, as a digest keyed with the site's secret (a
        pair has no version, and the page may not show a time the pair withholds from its reader,
        `NoteWrittenInConfidence`). Every decision gives it a new one."""
        read = f"{self.pk}:{self.decision}:{self.decided_by_id}:{self.decided_at}"
        return salted_hmac("incidents.DuplicatePair.decision_read", read, algorithm="sha256").hexdigest()[:32]


class DuplicateWordFrequencies(models.Model):
    """How many incidents use each word of the titles and descriptions, which weighs the words two
    incidents share in the duplicates' score, and how many candidates an incident has, which sets its
    prior (`incidents.duplicates.corpus_counts`): counted over every incident that is not
    confidential (what the staff shown the scores may read) by the whole-database run, then read by
    each rescoring. One row. Kept in the
    database rather than the cache, which may lose it (a cache server restarted; past MAX_ENTRIES the
    database cache drops a third of its keys, the first in alphabetical order, where this one sorts
    before the throttles'): the next rescoring would count every incident's words again first, a
    minute at 1,000,000 incidents with the queue waiting."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    incidents_counted = models.PositiveIntegerField()
    frequencies = models.JSONField(help_text="Each word, with how many of the incidents counted use it.")
    candidates_per_incident = models.FloatField(
        null=True,
        help_text="How many candidate pairs blocking made per incident, which sets the score's prior; "
        "empty if counted before it was (counted again at the next rescoring).",
    )
    counted_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "duplicate word frequencies"
        constraints = [
            models.CheckConstraint(condition=Q(id=1), name="duplicate_word_frequencies_one_row"),
            models.CheckConstraint(
                condition=Q(candidates_per_incident__gte=0), name="duplicate_candidates_per_incident_not_negative"
            ),
        ]

    def __str__(self):
        return f"Word frequencies of {self.incidents_counted} incidents, counted at {self.counted_at:%Y-%m-%d %H:%M}"


# Without `moved` in the history: it lists hidden rows too, and the history is shown to readers who
# may not see them (the record itself is shown only through what each reader may see).
@pghistory.track(exclude=["moved"])
class IncidentMerge(TextInNormalForm, NoteWrittenInConfidence, models.Model):
    """One merge of an incident (`merged`) into another (`survivor`), by `incidents.merges`: who,
    when, and exactly which rows moved, so that undoing it puts each back. `moved` holds, by kind,
    the ids of the claims, place links, victim groups and involvements that moved to the survivor,
    the responses newly linked to it, the claims marked as conflicts, and the incidents merged into
    the merged one before, pointed at the survivor with it (`followers`); hidden ones included
    (it is shown to each reader through what they may see). `pair_before` keeps the duplicate
    pair's decision as it was, for the undo."""

    # An undone merge goes with either incident, its history kept; one not undone holds both, and
    # `services.record_delete` refuses to delete them (undo it first). Protected, an incident ever
    # merged could never be deleted: no door removes a merge's record.
    survivor = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="merges_received")
    merged = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="merges")
    pair = models.ForeignKey(DuplicatePair, on_delete=models.SET_NULL, null=True, blank=True, related_name="merges")
    pair_before = models.JSONField(encoder=DjangoJSONEncoder, null=True, blank=True, editable=False)
    moved = models.JSONField(encoder=DjangoJSONEncoder, default=dict, editable=False)
    revision = models.ForeignKey(
        IncidentRevision,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The survivor's dates and counts recomputed from both, proposed for a Reviewer.",
    )
    revision_back = models.ForeignKey(
        IncidentRevision,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        editable=False,
        help_text="After the undo of a merge whose proposal was accepted: the survivor's own dates and counts "
        "proposed back.",
    )
    note = models.TextField(blank=True, help_text="Why, for the history.")
    note_confidential = models.BooleanField(
        "merged in confidence",
        default=False,
        editable=False,
        help_text="Merged (or undone) while the incidents, or a claim of theirs, were confidential: the note, "
        "who merged or undid it and when are withheld from readers without Confidential access.",
    )
    merged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+", editable=False
    )
    merged_at = models.DateTimeField(default=timezone.now, editable=False)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", editable=False
    )
    undone_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = IncidentMergeQuerySet.as_manager()

    decided_fields = ("merged_by", "merged_at", "undone_by", "undone_at")

    class Meta:
        ordering = ["-merged_at", "-id"]
        constraints = [
            # An incident is merged once at a time: a second merge of it waits for the undo of the first.
            models.UniqueConstraint(
                fields=["merged"], condition=Q(undone_at__isnull=True), name="incident_merge_one_active"
            ),
            models.CheckConstraint(condition=~Q(survivor=F("merged")), name="incident_merge_two_incidents"),
            models.CheckConstraint(
                condition=Q(undone_at__isnull=True, undone_by__isnull=True) | Q(undone_at__isnull=False),
                name="incident_merge_undone_when_by",
            ),
        ]
        indexes = [
            # Serves a survivor's merges (its page, a later undo that must come first).
            models.Index(fields=["survivor"], name="incident_merge_by_survivor"),
        ]

    def __str__(self):
        return f"Merge of {self.merged.public_id} into {self.survivor.public_id}"


class IncidentWithdrawal(models.Model):
    """A moment a listed incident left the view of some readers: returned to draft (readers of
    published incidents only), made confidential (readers without Confidential access), merged
    (readers who may not see its survivor) or deleted (every reader); or a merged incident, when
    its survivor left their view so (they followed it there). Written by the incident's
    trigger (`record_withdrawal`), read by an incremental sync (`reported_to`), never changed.

    `review_state` and `confidential` are the incident's just before it left, so that each reader
    is told only of incidents they could see then (`IncidentWithdrawalQuerySet.reported_to`). No
    foreign key: the row outlives a deleted incident, whose public id it keeps."""

    incident_id = models.BigIntegerField()
    public_id = models.TextField()
    review_state = models.CharField(max_length=10, choices=ReviewState.choices)
    confidential = models.BooleanField()
    withdrawn_at = models.DateTimeField()

    objects = IncidentWithdrawalQuerySet.as_manager()

    class Meta:
        indexes = [
            # Serves a sync's list of withdrawals since its last run, oldest first (`?since=`), in
            # the order of its pages (`WithdrawalPagination`).
            models.Index(fields=["withdrawn_at", "incident_id"], name="incident_withdrawal_at"),
            # Serves the test that a withdrawal is an incident's latest (`reported_to`).
            models.Index(fields=["incident_id", "id"], name="incident_withdrawal_incident"),
        ]

    def __str__(self):
        return f"{self.public_id} withdrawn at {self.withdrawn_at:%Y-%m-%d %H:%M:%S}"


class RecordType(models.TextChoices):
    SOURCE = "source", "Source"
    RESPONSE = "response", "Response"


class RecordWithdrawal(models.Model):
    """A moment a source or a response left the view of some readers: a source made confidential
    (readers without Confidential access) or deleted; a response about no incident they may see any
    more (`ResponseQuerySet.visible_to`: its incidents returned to draft, made confidential, merged
    or unlinked; or, about none before, linked to confidential ones alone) or deleted. Written by
    the database's triggers (Source's and Response's `record_withdrawal`, Incident's
    `record_response_withdrawals`, the links' `response_withdrawals_*`: migration 0105), read by an
    incremental sync (`reported_to`), never changed.

    `audience` is the narrowest that saw the record just before it left, so that each reader is told
    only of records they could see then. No foreign key: the row outlives a deleted record. One
    table for both kinds: each is named by its id alone and leaves by one rule; an incident keeps
    its own (IncidentWithdrawal), which holds its public id and follows merges."""

    record_type = models.CharField(max_length=8, choices=RecordType.choices)
    record_id = models.BigIntegerField()
    audience = models.PositiveSmallIntegerField(choices=Audience.choices)
    withdrawn_at = models.DateTimeField()

    objects = RecordWithdrawalQuerySet.as_manager()

    class Meta:
        indexes = [
            # Serves a sync's list of a kind's withdrawals since its last run, oldest first
            # (`?since=`), in the order of its pages (`WithdrawalPagination`).
            models.Index(fields=["record_type", "withdrawn_at", "record_id"], name="record_withdrawal_at"),
            # Serves the test that a withdrawal is a record's latest (`reported_to`).
            models.Index(fields=["record_type", "record_id", "id"], name="record_withdrawal_record"),
        ]

    def __str__(self):
        return f"{self.record_type} {self.record_id} withdrawn at {self.withdrawn_at:%Y-%m-%d %H:%M:%S}"


class PendingImport(models.Model):
    """An admin import's file between its preview and its confirmation (incidents.admin_csv). One
    per account, which a new upload replaces and the confirmation deletes: the database holds at
    most one file of TRACKER_IMPORT_MAX_BYTES per account, however many sessions it opens, and reads
    it only to confirm. The file was kept in the session, read and decoded again on every request
    of that browser, one per session. The preview's confirm form holds `key`, so a preview's page
    confirms the file it showed, not one uploaded since in another tab ("upload the file again").
    Signing out deletes it; one older than a session's lifetime (`uploaded_at` before
    SESSION_COOKIE_AGE ago) is gone to every reader (incidents.admin_csv.delete_stale_pending_imports)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=32)
    # The file's text as UTF-8 (importers.csv_file_text), bytes so that any character it holds fits.
    content = models.BinaryField()
    file_name = models.CharField(max_length=255)
    create_missing = models.BooleanField()
    uploaded_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.file_name} waiting to be imported by user {self.user_id}"
