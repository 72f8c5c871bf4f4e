"""Who may see what, and the reads every door shares.

Visibility is decided here and only here: the admin, the API, CSV exports, statistics and public
pages all start from `visible_to(user)`, so a rule changed here holds everywhere.

The rules depend on the user only through `can_see_unpublished`, `can_see_confidential` and
`can_see_exact_locations`: the API's incident list compiles its SQL once per combination of them
(`incidents/api/projections.py`), so a rule that looks at anything else about the user must be
added to that combination too.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta

from django.apps import apps
from django.conf import settings
from django.contrib.postgres.expressions import ArraySubquery
from django.db import DEFAULT_DB_ALIAS, connection, models
from django.db.models import Case, Count, Exists, F, Func, Max, Min, OuterRef, Q, Subquery, Value, When
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast, Coalesce, JSONObject
from django.db.models.lookups import GreaterThanOrEqual

from incidents.numbers import is_whole_number

CONFIDENTIAL_PERMISSION = "incidents.view_confidential"
# The decisions of a duplicate pair that still waits for a reviewer (`DuplicatePairQuerySet.waiting`):
# not reviewed, or decided the same and not merged yet.
WAITING_DECISIONS = ["pending", "same"]


def people_estimate(*, unknown: int | None = None) -> Coalesce:
    """The one figure an incident's people are counted, compared and sorted by: its best estimate,
    else its minimum ("at least 40" is 40), as the statistics sum them (`statistics._BEST`), the
    filters `min_people`/`max_people` compare them and the lists sort them. On the best estimate
    alone, "at least 500" was not found by `min_people=100` though the statistics counted its 500,
    and sorted among the incidents with no figure. With `unknown`, an incident with neither figure
    reads as that number: a list's cursor needs a value it can compare."""
    if unknown is None:
        return Coalesce("people_count", "people_count_min")
    return Coalesce("people_count", "people_count_min", Value(unknown), output_field=models.BigIntegerField())


def compiled_fragment(model: type[models.Model], expression, output_field: models.Field) -> RawSQL:
    """`expression`, correlated to a row of `model` (`OuterRef`), compiled into SQL once, for lists
    read often whose expression depends on nothing but the reader's audience: building and
    compiling it per request cost more than running it. The fragment names the row by its table,
    which is also the alias of any query of `model`'s table."""
    query = model.objects.annotate(fragment=expression).query
    sql, params = query.get_compiler(DEFAULT_DB_ALIAS).compile(query.annotations["fragment"])
    return RawSQL(sql, params, output_field=output_field)


def can_see_confidential(user) -> bool:
    """Staff given Confidential access. Staff only: they alone pass a second factor after their
    password (accounts.services.second_factor_required), so that a stolen password of an account
    without one (a partner tool's, say) reads nothing confidential, whatever groups it is in."""
    return bool(
        user and user.is_authenticated and user.is_active and user.is_staff and user.has_perm(CONFIDENTIAL_PERMISSION)
    )


@dataclass(frozen=True)
class VersionFields:
    """The columns of a record (an incident, a source, a response: `models.VersionsPerAudience`; a
    place: `models.PublicVersions`) that hold the version, the change time, (an incident's alone)
    the last writer and the creation time an audience is told; `otherwise`, the columns of a wider
    audience that a record without these holds for the same readers (a place read by staff without
    Confidential access: its own). Audiences are nested: the public sees nothing that staff without
    Confidential access do not, and those staff nothing that staff with it do not."""

    version: str
    updated_at: str
    updated_by: str
    # The moment the audience first saw the record (`models.CreatedPerAudience`).
    created_at: str
    otherwise: "VersionFields | None" = None

    def of(self, record) -> "VersionFields":
        """The columns `record` (a record, or its model) holds for this audience: these, or those
        of the narrowest wider audience its model keeps. Never a narrower audience's: a record
        without the public's columns tells the public what it tells staff without Confidential
        access, never every change. A record never hidden from anyone who may read it (a place)
        tells every audience its own creation time."""
        model = record if isinstance(record, type) else type(record)
        fields = self
        while not hasattr(model, fields.version):
            fields = fields.otherwise
        created = fields
        while not hasattr(model, created.created_at):
            created = created.otherwise
        return fields if created is fields else replace(fields, created_at=created.created_at)


_EVERY_CHANGE = VersionFields("version", "updated_at", "updated_by", "created_at")
_CHANGES_SEEN_WITHOUT_CONFIDENTIAL_ACCESS = VersionFields(
    "disclosed_version",
    "disclosed_updated_at",
    "disclosed_updated_by",
    "disclosed_created_at",
    otherwise=_EVERY_CHANGE,
)
# Those of `models.PublicVersions`. The public is told no last writer (the doors name one to staff
# alone): the disclosed one stands in. A place has no disclosed columns: staff without Confidential
# access are told its own.
_CHANGES_SEEN_BY_THE_PUBLIC = VersionFields(
    "public_version",
    "public_updated_at",
    "disclosed_updated_by",
    "public_created_at",
    otherwise=_CHANGES_SEEN_WITHOUT_CONFIDENTIAL_ACCESS,
)
# Every audience, the widest (told every change) first.
AUDIENCES = (_EVERY_CHANGE, _CHANGES_SEEN_WITHOUT_CONFIDENTIAL_ACCESS, _CHANGES_SEEN_BY_THE_PUBLIC)
EVERY_CHANGE, STAFF_WITHOUT_CONFIDENTIAL_ACCESS, THE_PUBLIC = AUDIENCES


class Audience(models.IntegerChoices):
    """Who reads a record, narrowest first: each audience sees all the one before it sees
    (`AUDIENCES` says the same of change times, widest first). A withdrawal of a source or a
    response keeps the narrowest that saw it before it left (`RecordWithdrawal`), so that it is told
    to that one and the wider."""

    PUBLIC = 0, "The public"
    STAFF = 1, "Staff without Confidential access"
    CONFIDENTIAL = 2, "Staff with Confidential access"


def audience_of(user) -> Audience:
    """The audience `user` reads as, which also chooses what they are told (`version_fields`)."""
    if can_see_confidential(user):
        return Audience.CONFIDENTIAL
    if can_see_unpublished(user):
        return Audience.STAFF
    return Audience.PUBLIC


# What each audience is told (`version_fields`).
VERSIONS_TOLD_TO = {
    Audience.CONFIDENTIAL: EVERY_CHANGE,
    Audience.STAFF: STAFF_WITHOUT_CONFIDENTIAL_ACCESS,
    Audience.PUBLIC: THE_PUBLIC,
}
# Each audience by the name a CSV export gives the readers its `version` column was read by
# (`version_audience`), so that an import compares a file's versions with theirs.
AUDIENCE_NAMES = {Audience.CONFIDENTIAL: "confidential", Audience.STAFF: "staff", Audience.PUBLIC: "public"}
AUDIENCES_BY_NAME = {name: audience for audience, name in AUDIENCE_NAMES.items()}
_AUDIENCES_TOLD = {told: audience for audience, told in VERSIONS_TOLD_TO.items()}


@dataclass(frozen=True)
class EditedVersion:
    """The version a writer edited, as the audience they read it as was told it: an ETag and the
    admin's forms carry both (`version_tag`, "staff.3"), so that a save compares it with that
    audience's version, not the writer's at the moment they save. Access given or taken away between
    the read and the save otherwise compared it with another count: one who read a record with
    Confidential access and lost it was compared with the version of readers without it, which can
    equal the one they read, and their stale edit passed. `told` None: a bare number ("3", a client
    from before versions named their audience), compared with the writer's own."""

    number: int
    told: VersionFields | None = None

    @classmethod
    def parse(cls, text: str) -> "EditedVersion":
        """The version `text` names: "staff.3", or "3". ValueError, with a message for the writer,
        for anything else (a tampered form, a script's garbled header)."""
        name, _, number = text.strip().rpartition(".")
        if not is_whole_number(number) or int(number) < 1:
            raise ValueError(f'{text!r} names no version: send it as its ETag gave it ("staff.3").')
        if not name:
            return cls(int(number))
        if name not in AUDIENCES_BY_NAME:
            raise ValueError(
                f"{name!r} is not whose version this is: {', '.join(AUDIENCE_NAMES.values())}, as its ETag gave it."
            )
        return cls(int(number), VERSIONS_TOLD_TO[AUDIENCES_BY_NAME[name]])

    @property
    def tag(self) -> str:
        """This version as an ETag names it: "staff.3", or "3" for a bare number."""
        return str(self.number) if self.told is None else f"{AUDIENCE_NAMES[_AUDIENCES_TOLD[self.told]]}.{self.number}"

    def now(self, record, user) -> str:
        """`record`'s version now, as this one counts it (`user`'s own for a bare number), named as an
        ETag names it: what a stale edit's refusal tells its writer to reload."""
        name = audience_name(user) if self.told is None else AUDIENCE_NAMES[_AUDIENCES_TOLD[self.told]]
        return f"{name}.{version_seen_by(record, user, self.told)}"


def version_tag(record, user) -> str:
    """`record`'s version as `user` is told it, naming their audience (`EditedVersion`): "staff.3"."""
    return told_version_tag(version_seen_by(record, user), user)


def told_version_tag(version: int, user) -> str:
    """`version`, the one `user` is told (`version_fields`), naming their audience: "staff.3"."""
    return f"{audience_name(user)}.{version}"


def access_changed_since_read(told: VersionFields, user, record) -> str | None:
    """How `user`'s access changed since they read `record` as the audience `told` (a writer's read,
    `EditedVersion`), where its model keeps another count for their audience now: "taken" (they
    read it with Confidential access, or staff status, they no longer have), "given" (they read it
    before they had theirs), else None. Either way the read is no base for their edit: read with
    access taken away since, it holds what they may no longer see, and its count counts changes
    hidden from them; read before access was given, it left out what they may see now (a
    confidential claim, a link to a confidential incident, a sensitive place's exact coordinates),
    which a save as they are now would remove or overwrite, a colleague's newer change included. A
    place tells staff without Confidential access every change, as it tells those with it: None."""
    if told.of(record).version == _fields_of(record, user, None).version:
        return None
    return "taken" if _AUDIENCES_TOLD[told] > audience_of(user) else "given"


def audience_name(user) -> str:
    """The name of the audience `user` reads as (`audience_of`), as a version names it: the CSV's
    `version_audience`, the API's, and an ETag's first part."""
    return AUDIENCE_NAMES[audience_of(user)]


def version_fields(user) -> VersionFields:
    """Which of a record's versions, change times, (an incident's) last writers and creation times
    `user` is told, and syncs and edits by: with the confidential permission, its own, which move
    with every change; staff without it (`can_see_unpublished`), `disclosed_*`, which move only with
    a change they can see (kept by the database, migrations 0095 to 0097), so that an edit of what
    is hidden from them (an incident's confidential claim, a confidential source cited, a
    response's confidential incident) does not tell them something hidden changed, nor who changed
    it; the public (anonymous readers, accounts that are not staff), a source's, a response's and a
    place's `public_*`, which move only with a change it can see (migrations 0098, 0101, 0102: not
    a source's notes, nor a response's link to an incident not published, nor a sensitive place's
    exact coordinates, its own or those of a place an incident happened at). The creation time of a
    source, an incident or a response each audience is told is the moment it first saw the record
    (migration 0104), not the day it was recorded in confidence or as a draft. The one place that
    chooses: the API, the admin, the CSV export, the releases and the services read it. A query
    names the columns of its model (`VersionFields.of`): a place has no `disclosed_*` (staff without
    Confidential access read it whole)."""
    return VERSIONS_TOLD_TO[audience_of(user)]


def versions_told(*, every_change: bool) -> VersionFields:
    """`version_fields` of staff with (`every_change`) or without Confidential access: what a
    revision's proposer, or a merge's Reviewer, was told of an incident (a proposer who is not staff
    is counted by `disclosed_*` too: a revision keeps no narrower audience)."""
    return EVERY_CHANGE if every_change else STAFF_WITHOUT_CONFIDENTIAL_ACCESS


def _fields_of(record, user, told: VersionFields | None) -> VersionFields:
    """The columns of `record` that hold what `user` is told (`version_fields`, or `told`): a record
    of a model without them holds a wider audience's (`VersionFields.of`)."""
    return (told or version_fields(user)).of(record)


def version_seen_by(record, user, told: VersionFields | None = None) -> int:
    """`record`'s version as `user` is told it (`version_fields`, or `told`)."""
    return getattr(record, _fields_of(record, user, told).version)


def updated_at_seen_by(record, user, told: VersionFields | None = None):
    """`record`'s change time as `user` is told it (`version_fields`, or `told`)."""
    return getattr(record, _fields_of(record, user, told).updated_at)


def created_at_seen_by(record, user, told: VersionFields | None = None):
    """`record`'s creation time as `user` is told it (`version_fields`, or `told`): when they first
    saw it, not when it was recorded, perhaps in confidence (`models.CreatedPerAudience`)."""
    return getattr(record, _fields_of(record, user, told).created_at)


def updated_by_seen_by(incident, user, told: VersionFields | None = None):
    """Who last changed `incident` as `user` is told it (`version_fields`, or `told`): the writer of
    the last change they can see. Whether `user` may be told a name at all is the door's rule (staff
    only)."""
    return getattr(incident, _fields_of(incident, user, told).updated_by)


def can_see_unpublished(user) -> bool:
    """Staff who may view incidents see drafts and records in review; everyone else sees published ones."""
    return bool(
        user and user.is_authenticated and user.is_active and user.is_staff and user.has_perm("incidents.view_incident")
    )


# Fields of a model shown only to staff (`can_see_unpublished`); everyone else reads them as null.
STAFF_ONLY_FIELDS = {"source": ("notes",)}


def limit_to_visible(queryset, user):
    """`queryset.visible_to(user)` for models with visibility rules; any other queryset as it is.
    For code that handles many models alike (admin choices, history, deletion checks)."""
    return queryset.visible_to(user) if hasattr(queryset, "visible_to") else queryset


def can_see_exact_locations(user) -> bool:
    """Staff readers see a sensitive place's exact coordinates; everyone else sees the coarsened
    ones (`coordinates_for`), so an informant's village is never published by a list or a map."""
    return can_see_unpublished(user)


class PublicCoordinate(Func):
    """Latitude (`index=1`) or longitude (`index=2`) of the nearest place, from this one up through
    its parents, that is not sensitive nor inside a sensitive place (`Place.within_sensitive`) and
    has coordinates: SQL function `place_public_coordinates` (migrations 0007, 0058), so lists built
    by PostgreSQL and the ORM apply the same rule."""

    template = "(place_public_coordinates(%(expressions)s))[%(index)s]"
    arity = 1
    output_field = models.DecimalField(max_digits=9, decimal_places=6)


# How many of a place's levels (itself, its parent, …) `coordinates_for` reads by joins before calling
# `place_public_coordinates`: a village's province is its grandparent.
PUBLIC_COORDINATES_JOINED = 3


def coordinates_for(user, place: str = "") -> tuple[models.Expression, models.Expression]:
    """Expressions of the latitude and longitude of the place at `place` (a lookup path, "" for a
    place queryset's own rows) as `user` may see them: exact for staff, coarsened for everyone else."""
    prefix = f"{place}__" if place else ""
    if can_see_exact_locations(user):
        return F(f"{prefix}latitude"), F(f"{prefix}longitude")
    # The nearest of the place and its ancestors that may show its coordinates, as
    # `place_public_coordinates` finds it: the place, its parent and grandparent are read by joins
    # in the same query, and only a place none of them may show calls the function, from the
    # grandparent's parent. Each call walked the parents again, once for each coordinate: 2.5 ms
    # of PostgreSQL's CPU for a page of 200 incidents, whose villages show their province's.
    places = [prefix + "parent__" * depth for depth in range(PUBLIC_COORDINATES_JOINED)]
    return tuple(
        Case(
            *(
                When(
                    Q(**{f"{shown}within_sensitive": False, f"{shown}latitude__isnull": False}),
                    then=F(f"{shown}{field}"),
                )
                for shown in places
            ),
            default=PublicCoordinate(F(f"{places[-1]}parent_id"), index=index),
        )
        for index, field in ((1, "latitude"), (2, "longitude"))
    )


class SourceOrigin(Func):
    """The origin of a source (the end of its `cites` chain) as a reader may know it: with
    `through_confidential` false the chain ends at the last source that is not confidential, as
    the API shows a relay of a confidential source (`"cites": null`). SQL function `source_origin`
    (migration 0018), so the list built by PostgreSQL and the ORM count alike."""

    function = "source_origin"
    arity = 2
    output_field = models.BigIntegerField()


# From how many independent origins an incident's verification is suggested as "corroborated".
# Only a suggestion: the verification itself stays a Reviewer's decision.
CORROBORATING_ORIGINS = 2


class JSONBuildObject(Func):
    """`json_build_object(key, value, …)`: keys in the order given. Django's `JSONObject` builds
    `jsonb`, which stores keys sorted by length, so a JSON text would not read in a serializer's
    field order."""

    function = "json_build_object"
    output_field = models.JSONField()

    def __init__(self, fields: dict):
        pairs = ((_json_key(name), value) for name, value in fields.items())
        super().__init__(*(part for pair in pairs for part in pair))


def _json_key(name: str) -> models.Expression:
    """A key as an SQL literal rather than a parameter: binding the incident list's seventy names
    into every query cost about a millisecond. Names are Python identifiers (serializer fields),
    which need no quoting inside '…'."""
    if not name.isidentifier():
        raise ValueError(f"Not a field name: {name!r}")
    return models.expressions.RawSQL(f"'{name}'::text", (), output_field=models.TextField())


def suggested_verification(independent_origins: models.Expression) -> Case:
    """The verification that `independent_origins` suggest: `corroborated` from
    CORROBORATING_ORIGINS, else `alleged`. Shown beside the Reviewer's decision, never applied."""
    return Case(
        When(GreaterThanOrEqual(independent_origins, CORROBORATING_ORIGINS), then=Value("corroborated")),
        default=Value("alleged"),
        output_field=models.TextField(),
    )


def corroboration_object(independent_origins: models.Expression, sources: models.Expression) -> "JSONBuildObject":
    """An incident's corroboration, as `IncidentQuerySet.corroboration` describes it, from its figures."""
    return JSONBuildObject(
        {
            "independent_origins": independent_origins,
            "sources": sources,
            "suggested_verification": suggested_verification(independent_origins),
        }
    )


def claim_origin(user) -> Case:
    """The origin of a claim's source as `user` may know it (`SourceOrigin`), for claim querysets.
    A source that cites nothing is its own origin: only a relay calls the function, which cost 6
    microseconds a claim, a third of a page of 200 incidents' corroboration."""
    return Case(
        When(source__cites__isnull=True, then=F("source_id")),
        default=SourceOrigin(F("source_id"), Value(can_see_confidential(user))),
    )


class KeptOriginsAtLeast(Exists):
    """`EXISTS` of the incident's kept export row counting at least `count` independent origins as
    `user` may know them: the count `IncidentQuerySet.with_independent_origins` makes, kept per
    audience by the triggers that keep the row (migration 0043). `min_origins` filters by it at
    every door: counting every incident's origins there, each chain followed source by source,
    took the statistics of a million incidents 10.9 s, against 0.6 s from the kept counts
    (bench/README.md, "min_origins from the kept counts"). Its own class, holding its reader and
    count, so that the CSV export says it of the kept row itself (exports._kept_condition)."""

    def __init__(self, *, user, count: int):
        # Imported here: exports imports this module. It chooses, in one place, which claims a
        # reader's counts are made of.
        from incidents.exports import origin_cells

        kept_rows = apps.get_model("incidents", "IncidentExportRow").objects
        super().__init__(kept_rows.filter(incident=OuterRef("pk"), **{f"{origin_cells(user)}__gte": count}))
        self.user = user
        self.count = count


class QualifierFromFiguresQuerySet(models.QuerySet):
    """Incidents and claims, whose count's qualifier left blank is read from the figures
    (`models.QualifierFromFigures`): `bulk_create` calls no `save()`, so it is read here too."""

    def bulk_create(self, objs, *args, **kwargs):
        objs = list(objs)
        for obj in objs:
            obj.fill_count_qualifier()
        return super().bulk_create(objs, *args, **kwargs)


def ids_in_tree_below(model: type[models.Model], root_id: int) -> RawSQL:
    """The ids of `root_id` and of every record below it by `parent` (a place's or an incident
    type's), as a subquery. One recursive query, whatever the tree's depth (a query a level let a
    tree 1,500 deep cost an anonymous filter 1,500 statements); UNION stops at a loop."""
    table = connection.ops.quote_name(model._meta.db_table)
    return RawSQL(
        f"WITH RECURSIVE tree(id) AS (SELECT %s::bigint UNION SELECT below.id FROM {table} AS below"
        " JOIN tree ON below.parent_id = tree.id) SELECT id FROM tree",
        [root_id],
    )


def place_path(field: str) -> Func:
    """The path of the place whose id is in `field` (`PlaceQuerySet.with_path`)."""
    return Func(F(field), function="csv_place_path", output_field=models.TextField())


class PlaceQuerySet(models.QuerySet):
    def with_path(self) -> "PlaceQuerySet":
        """Annotate `path`: the place as the CSV export writes it and the import reads it, its
        names from the outermost place down to it (`Thailand > Bangkok > Bangkok`), by the SQL
        function the export uses (migration 0019). Names repeat (the province and its city), and
        the path is unique: what an analyst picks a place by."""
        return self.annotate(path=place_path("pk"))

    def with_coordinates_for(self, user) -> "PlaceQuerySet":
        """Annotate `shown_latitude`/`shown_longitude`: what `user` may see of each place's location."""
        shown_latitude, shown_longitude = coordinates_for(user)
        return self.annotate(shown_latitude=shown_latitude, shown_longitude=shown_longitude)


class SourceQuerySet(models.QuerySet):
    def visible_to(self, user) -> "SourceQuerySet":
        if can_see_confidential(user):
            return self
        return self.filter(confidential=False)


def visible_source_id(user, field: str) -> Subquery:
    """The source id in `field` if `user` may see that source, else null: a link never reveals a
    hidden source (a public article relaying a confidential testimony)."""
    # Looked up when called: models.py imports this module.
    sources = apps.get_model("incidents", "Source").objects
    return Subquery(sources.visible_to(user).filter(pk=OuterRef(field)).values("pk")[:1])


def claim_people_span() -> dict[str, models.Aggregate]:
    """`claim_people_min`/`claim_people_max`: the lowest and highest figure a group of claims
    reports, a claim's best estimate standing in for a bound it lacks, and its other bound where it
    gives one alone ("at least 3000" counts at the high end too: it left "10", "at least 3000" and
    "at most 5" spanning 10 to 10). For `claim_range`; the CSV export's kept rows apply the same
    rule in SQL (migrations 0028, 0100), which the export's tests hold to the records."""
    return {
        "claim_people_min": Min(Coalesce("people_count_min", "people_count", "people_count_max")),
        "claim_people_max": Max(Coalesce("people_count_max", "people_count", "people_count_min")),
    }


class ClaimQuerySet(QualifierFromFiguresQuerySet):
    def bulk_create(self, objs, *args, **kwargs):
        # A precision left blank is read from the dates (`models.PrecisionFromDates`), as `save()` does.
        objs = list(objs)
        for obj in objs:
            obj.fill_date_precision()
        return super().bulk_create(objs, *args, **kwargs)

    def visible_to(self, user) -> "ClaimQuerySet":
        """Claims on incidents the user may see, hiding confidential claims and claims of
        confidential sources from users without the confidential permission."""
        incidents = self.model._meta.get_field("incident").related_model.objects.visible_to(user)
        return self.filter(incident__in=incidents.values("pk")).disclosed_to(user)

    def confidential(self) -> "ClaimQuerySet":
        """The claims only readers with the confidential permission see: confidential ones and
        those of a confidential source (what `disclosed_to` leaves out for everyone else)."""
        # Through the join to each claim's source, which PostgreSQL runs as a hash join over many
        # claims and as one primary-key lookup per claim over a few (a page's): hashing every
        # confidential source first, as an `IN (subquery)` does, cost each page of 50 incidents
        # more than its own claims (3,152 confidential sources at 1,000,000 incidents).
        return self.filter(Q(confidential=True) | Q(source__confidential=True))

    def disclosed_to(self, user) -> "ClaimQuerySet":
        """The claims the user may see among those of an incident they may see: for subqueries
        correlated to an incident already limited by `visible_to`, which need not check it again."""
        if can_see_confidential(user):
            return self
        # "Its source is not one of the few confidential ones" (an anti-join on their own index)
        # rather than a join to every claim's source, which for a word found in one excerpt had
        # PostgreSQL hash the whole source table.
        sources = self.model._meta.get_field("source").related_model.objects
        confidential_source = sources.filter(pk=OuterRef("source_id"), confidential=True)
        return self.filter(confidential=False).exclude(Exists(confidential_source))


def claim_states_disclosed_to(states: models.QuerySet, user) -> models.QuerySet:
    """Among recorded states of claims (their history's rows, which outlive a deleted claim), those
    `user` may see by `ClaimQuerySet.disclosed_to`'s rule, each state's source as it is now. Its
    source must be one the user may see, rather than not a confidential one: a source deleted since
    the claim cannot be checked any more, and then hides the claim."""
    if can_see_confidential(user):
        return states
    sources = apps.get_model("incidents", "Source").objects.visible_to(user)
    return states.filter(confidential=False, source__in=sources.values("pk"))


def _audience(user) -> Q:
    """Which rows of incidents, or of totals over incidents, `user` may see: published ones unless
    they may see drafts, and not confidential ones unless they hold the permission."""
    conditions = {}
    if not can_see_unpublished(user):
        conditions["review_state"] = "published"
    if not can_see_confidential(user):
        conditions["confidential"] = False
    return Q(**conditions)


def _limit_to_audience(queryset, user):
    """The rows of incidents, or of totals over incidents, that `user` may see (`_audience`)."""
    return queryset.filter(_audience(user))


class IncidentQuerySet(QualifierFromFiguresQuerySet):
    def visible_to(self, user) -> "IncidentQuerySet":
        """The incidents `user` may see; never a merged one (it lives on in its survivor, and its
        address redirects there: `merged_visible_to`)."""
        return self.filter(self._visible(user))

    def hidden_from(self, user) -> "IncidentQuerySet":
        """The incidents `user` may not see: every one `visible_to` leaves out. For staff, who see
        drafts, the few confidential and merged ones (each read through its partial index), where
        the visible ones are nearly all."""
        return self.filter(~self._visible(user))

    @staticmethod
    def _visible(user) -> Q:
        return _audience(user) & Q(merged_into__isnull=True)

    def seen_by(self, user) -> "IncidentQuerySet":
        """The incidents `user` may see by their own review state and confidentiality, merged ones
        included: for the doors that tell of merges, never for lists."""
        return _limit_to_audience(self, user)

    def merged_visible_to(self, user) -> "IncidentQuerySet":
        """The merged incidents `user` may follow to their survivor: those they could see before the
        merge, merged into one they may see (each by its own review state and confidentiality). A
        reader who may not see either side learns nothing: the address answers as if it never
        existed."""
        survivors = self.model.objects.seen_by(user).values("pk")
        return self.seen_by(user).filter(merged_into__in=survivors)

    def history_read_by(self, user) -> "IncidentQuerySet":
        """The incidents whose history `user` may read: those they may see, and the merged ones they
        may follow to their survivor (`merged_visible_to`). A merged incident's address leads to its
        survivor, and its history is where what it said before the merge is still told."""
        return self.visible_to(user) | self.merged_visible_to(user)

    def synced_to(self, user) -> "IncidentQuerySet":
        """What an incremental sync (`updated_since`) reports to `user`: the incidents they may see
        and, so that a partner's copy follows a merge, the merged ones they may follow (their
        `merged_into` says where to)."""
        # A survivor looked up by its key (EXISTS), not `merged_into IN (every incident seen)`: at
        # 1,000,000 incidents that set no longer fits a hash, and PostgreSQL then costed the check of
        # every row as a scan of the set (never run: hardly any incident is merged), chose a
        # parallel plan, and started a worker process for each page of a sync.
        survivor = self.model.objects.seen_by(user).filter(pk=OuterRef("merged_into_id"))
        return self.seen_by(user).filter(Q(merged_into__isnull=True) | Exists(survivor))

    def overlapping(self, date_from: date | None = None, date_to: date | None = None) -> "IncidentQuerySet":
        """Incidents whose date range overlaps [date_from, date_to] (both inclusive, either open).

        An incident dated "July 2021" (1-31 July) is found by a query for 15-20 July 2021: uncertain
        dates are ranges, and a range that could contain the queried days matches.
        """
        condition = Q()
        if date_from is not None:
            condition &= Q(date_end__gte=date_from)
        if date_to is not None:
            condition &= Q(date_start__lte=date_to)
        return self.filter(condition)

    def with_submitted_at(self, user) -> "IncidentQuerySet":
        """Annotate `submitted_at`: when each incident last went into review, as its history records
        it (the first of its latest run of events in review), or None where no event records it
        (synthetic data written without history). Not `updated_at`, which any edit during review
        moves. A reader without Confidential access is shown none of an incident's states while it
        was confidential (history_visible_to), so one made public while in review counts from then.
        Two reads of the incident's events through their index per incident, in the same query."""
        events = apps.get_model("incidents", "Incident").pgh_event_model.objects
        in_review = Q(review_state="in_review")
        if not can_see_confidential(user):
            in_review &= Q(confidential=False)
        # Of the incident (the outer query's row), not of each event: PostgreSQL reads it once per
        # incident, where a reference to the event's own `pgh_obj` read it again for every event.
        last_out_of_review = (
            events.filter(pgh_obj=OuterRef(OuterRef("pk"))).exclude(in_review).order_by("-pgh_id").values("pgh_id")[:1]
        )
        submitted = (
            events.filter(in_review, pgh_obj=OuterRef("pk"), pgh_id__gt=Coalesce(Subquery(last_out_of_review), 0))
            .order_by("pgh_id")
            .values("pgh_created_at")[:1]
        )
        return self.annotate(submitted_at=Subquery(submitted))

    def with_last_change_told(self, user) -> "IncidentQuerySet":
        """Annotate `last_changed_at` and `last_changed_by` (a username, or None): the change time and
        the last writer `user` is told (`version_fields`), for the doors that read the incident's row
        itself (the admin): its `updated_at` and `updated_by` are those of every change."""
        told = version_fields(user).of(self.model)
        users = apps.get_model(settings.AUTH_USER_MODEL)
        # A subquery, not a join: read for the rows shown only, never by a list's count.
        writer = users.objects.filter(pk=OuterRef(f"{told.updated_by}_id")).values(users.USERNAME_FIELD)
        return self.annotate(last_changed_at=F(told.updated_at), last_changed_by=Subquery(writer))

    def with_claim_range(self, user) -> "IncidentQuerySet":
        """Annotate `claim_people_min`/`claim_people_max`: the span of figures that the sources the
        user may see report, beside the analysts' own estimate. One subquery each, no join, so it
        composes with any filter and keeps one row per incident."""
        return self.annotate(**self.claim_range(user))

    def claim_range(self, user) -> dict[str, Subquery]:
        """The expressions `with_claim_range` annotates, for building into other expressions."""
        claims = (
            self.model._meta.get_field("claims")
            .related_model.objects.disclosed_to(user)
            .filter(incident=OuterRef("pk"))
            .order_by()
            .values("incident")
        )
        return {
            name: Subquery(claims.annotate(value=span).values("value")) for name, span in claim_people_span().items()
        }

    def with_claim_figures(self, user) -> "IncidentQuerySet":
        """`with_claim_range`, and `claim_figures`: each figure the claims `user` may see give, as
        the source gave it (`people_count`, `people_count_min`, `people_count_max`,
        `count_qualifier`, with its `source_id`), for saying what the sources say ("about 500",
        "at least 40") rather than the bare span, which read an "about 500" as exactly 500. In
        the same query, one subquery more per incident; claims giving no figure are left out."""
        claims = (
            self.model._meta.get_field("claims")
            .related_model.objects.disclosed_to(user)
            .filter(incident=OuterRef("pk"))
            .filter(
                Q(people_count__isnull=False) | Q(people_count_min__isnull=False) | Q(people_count_max__isnull=False)
            )
            .order_by("pk")
        )
        figures = JSONObject(
            source_id="source_id",
            people_count="people_count",
            people_count_min="people_count_min",
            people_count_max="people_count_max",
            count_qualifier="count_qualifier",
        )
        return self.with_claim_range(user).annotate(claim_figures=ArraySubquery(claims.values(json=figures)))

    def _claims_with_origins(self, user):
        """The claims `user` may see of the outer incident, each with `origin`: its source's origin
        as `user` may know it. For subqueries correlated to an incident already limited by
        `visible_to`, grouped by incident."""
        claims = self.model._meta.get_field("claims").related_model.objects
        return (
            claims.disclosed_to(user)
            .filter(incident=OuterRef("pk"))
            .order_by()
            .annotate(origin=claim_origin(user))
            .values("incident")
        )

    def corroboration(self, user) -> Coalesce:
        """An incident's corroboration as `user` may know it, as a JSON object: `independent_origins`
        (the origins that the sources of the claims `user` may see come down to, each counted once
        however many sources relay it; a chain ends, for `user`, at the last source they may see),
        `sources` (the distinct sources of those claims) and `suggested_verification`. One
        correlated subquery."""
        figures = {"independent_origins": Count("origin", distinct=True), "sources": Count("source", distinct=True)}
        by_incident = (
            self._claims_with_origins(user)
            .annotate(**figures)
            .values(json=corroboration_object(F("independent_origins"), F("sources")))
        )
        without_claims = corroboration_object(Value(0), Value(0))
        return Coalesce(Subquery(by_incident), without_claims, output_field=models.JSONField())

    def with_corroboration(self, user) -> "IncidentQuerySet":
        """Annotate `corroboration` (see above) as a dict."""
        # Cast to jsonb: Django decodes jsonb columns, and hands psycopg's decoded `json` on as text.
        return self.annotate(corroboration=Cast(self.corroboration(user), models.JSONField()))

    def with_kept_corroboration(self, user) -> "IncidentQuerySet":
        """Annotate `corroboration` as `with_corroboration` does, its independent origins read from
        the incident's kept export row (the count for `user`'s audience, kept by the statement that
        changes a claim or a source's chain; migration 0043) rather than by following every claim's
        chain: for pages that list many. Its sources are counted from the claims (the kept
        `source_count` counts claims, as the CSV's column says, and a source may have a public and a
        confidential claim of one incident)."""
        # Imported here: exports imports this module. It chooses, in one place, which claims a
        # reader's counts are made of.
        from incidents.exports import origin_cells

        kept_rows = apps.get_model("incidents", "IncidentExportRow").objects
        origins = kept_rows.filter(incident=OuterRef("pk")).values(origin_cells(user))
        claims = self.model._meta.get_field("claims").related_model.objects
        sources = (
            claims.disclosed_to(user)
            .filter(incident=OuterRef("pk"))
            .order_by()
            .values("incident")
            .annotate(count=Count("source", distinct=True))
            .values("count")
        )
        figures = corroboration_object(Coalesce(Subquery(origins), Value(0)), Coalesce(Subquery(sources), Value(0)))
        return self.annotate(corroboration=Cast(figures, models.JSONField()))

    def with_independent_origins(self, user) -> "IncidentQuerySet":
        """Annotate `independent_origins` alone (see `corroboration`): what the kept export rows
        count for each audience (`KeptOriginsAtLeast`), counted here from the claims."""
        origins = self._claims_with_origins(user).annotate(value=Count("origin", distinct=True)).values("value")
        return self.annotate(independent_origins=Coalesce(Subquery(origins), Value(0)))

    def possible_duplicates_of(self, incident, window_days: int) -> "IncidentQuerySet":
        """Other incidents of the same type whose dates overlap the incident's, widened by
        `window_days` on each side (reports of one event often disagree by a few days), and that
        share a place or a country with it. Chain after `visible_to(user)`: one query."""
        places = incident.places.all()
        countries = places.exclude(country="").values("country")
        incident_places = self.model._meta.get_field("incident_places").related_model.objects.filter(
            incident=OuterRef("pk")
        )
        return (
            self.exclude(pk=incident.pk)
            .filter(incident_type=incident.incident_type_id)
            .overlapping(*widened(incident.date_start, incident.date_end, window_days))
            .filter(
                Exists(incident_places.filter(place__in=places.values("pk")))
                | Exists(incident_places.filter(place__country__in=countries))
            )
        )

    def possible_duplicates_of_new(
        self, candidates: Sequence["DuplicateCandidate"], window_days: int, limit: int = 10
    ) -> dict[int, list[int]]:
        """possible_duplicates_of for incidents not written yet (an import's new rows), all at
        once: {index in `candidates`: ids of up to `limit` incidents in this queryset that each
        may duplicate}. The same rule in SQL, with the candidates passed as arrays: one query
        whatever their number; the limit stops each candidate's search early, as the admin's
        warning shows ten. Chain after `visible_to(user)`."""
        if not candidates:
            return {}
        incident_places = self.model._meta.get_field("incident_places").related_model
        place = incident_places._meta.get_field("place").related_model
        visible_sql, visible_params = self.order_by().values("pk").query.sql_with_params()
        statement = f"""
            WITH candidate AS (
                SELECT index, incident_type_id, date_from, date_to,
                    place_ids::bigint[] AS place_ids, countries::text[] AS countries
                FROM unnest(%s::int[], %s::bigint[], %s::date[], %s::date[], %s::text[], %s::text[])
                    AS c(index, incident_type_id, date_from, date_to, place_ids, countries)
            )
            SELECT candidate.index, match.id
            FROM candidate CROSS JOIN LATERAL (
                SELECT incident.id FROM {self.model._meta.db_table} AS incident
                WHERE incident.incident_type_id = candidate.incident_type_id
                    AND incident.date_end >= candidate.date_from AND incident.date_start <= candidate.date_to
                    AND incident.id IN ({visible_sql}) AND EXISTS (
                        SELECT 1 FROM {incident_places._meta.db_table} AS link
                        JOIN {place._meta.db_table} AS place ON place.id = link.place_id
                        WHERE link.incident_id = incident.id
                            AND (link.place_id = ANY(candidate.place_ids) OR place.country = ANY(candidate.countries))
                    )
                LIMIT %s
            ) AS match
        """
        windows = [widened(candidate.date_start, candidate.date_end, window_days) for candidate in candidates]
        # Each candidate's places and countries as an array literal ("{3,17}", "{CN,KP}"): PostgreSQL's
        # arrays of arrays must be rectangular, and a separate table of them would be scanned whole
        # for every incident compared. Ids are numbers and country codes letters: nothing to escape.
        params = [
            list(range(len(candidates))),
            [candidate.incident_type_id for candidate in candidates],
            [date_from for date_from, _ in windows],
            [date_to for _, date_to in windows],
            ["{" + ",".join(str(place) for place, _ in candidate.places if place) + "}" for candidate in candidates],
            ["{" + ",".join(country for _, country in candidate.places if country) + "}" for candidate in candidates],
            *visible_params,
            limit,
        ]
        duplicates = defaultdict(list)
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            for index, incident_id in cursor.fetchall():
                duplicates[index].append(incident_id)
        return dict(duplicates)


def widened(date_start: date, date_end: date, days: int) -> tuple[date, date]:
    """The range `date_start`..`date_end` widened by `days` on each side, within the calendar: an
    incident dated 31 December 9999 has no later day to widen to (OverflowError, a 500)."""
    window = timedelta(days=days)
    return (
        date_start - window if date_start - date.min >= window else date.min,
        date_end + window if date.max - date_end >= window else date.max,
    )


@dataclass(frozen=True)
class DuplicateCandidate:
    """An incident about to be written, as the possible-duplicate rule reads it: its places as
    (id, country) pairs; a place not saved yet has no id and matches by its country alone."""

    incident_type_id: int
    date_start: date
    date_end: date
    places: tuple[tuple[int | None, str], ...]


def possible_duplicates_among(
    candidates: Sequence[DuplicateCandidate], window_days: int, limit: int = 10
) -> dict[int, list[int]]:
    """possible_duplicates_of within a list of incidents not written yet (an import's new rows):
    {index: indexes of up to `limit` earlier candidates it may duplicate}.

    Each candidate is filed under its (type, place) and (type, country) keys, in buckets of
    `window_days` days covering its dates. Two candidates whose dates come within the window of
    each other lie in the same or neighbouring buckets, so each is compared only with those, and
    a file of many rows on the same days and places costs `limit` comparisons a row, not the
    square of their number."""
    width = max(window_days, 1)
    buckets: dict[tuple, list[int]] = defaultdict(list)
    duplicates = {}
    for index, candidate in enumerate(candidates):
        keys = {(candidate.incident_type_id, "country", country) for _, country in candidate.places if country}
        keys |= {(candidate.incident_type_id, "place", place) for place, _ in candidate.places if place is not None}
        first, last = candidate.date_start.toordinal() // width, candidate.date_end.toordinal() // width
        nearby = (
            earlier
            for key in keys
            for bucket in range(first - 1, last + 2)
            for earlier in buckets.get((key, bucket), ())
        )
        found, seen = [], set()
        for earlier in nearby:
            other = candidates[earlier]
            if earlier in seen:
                continue
            seen.add(earlier)
            other_from, other_to = widened(other.date_start, other.date_end, window_days)
            if other_from <= candidate.date_end and other_to >= candidate.date_start:
                found.append(earlier)
                if len(found) == limit:
                    break
        if found:
            duplicates[index] = sorted(found)
        for key in keys:
            for bucket in range(first, last + 1):
                buckets[(key, bucket)].append(index)
    return duplicates


class IncidentRevisionQuerySet(models.QuerySet):
    def visible_to(self, user) -> "IncidentRevisionQuerySet":
        """Proposed revisions are unpublished work: staff who may see their incident see them, and
        a revision whose proposer could see confidential claims only if they may too. A merged
        incident's too, by its own state: a revision a merge did not wait for (one its Reviewer may
        not see) stays in the queue of those who may, to be rejected. Each with
        `proposal_withheld`: whether who proposed it and when are kept from `user`, as the merge
        (or its undo) that wrote it withholds its Reviewer and time (decided in confidence,
        `NoteWrittenInConfidence`), which the revision named in every door; and `decision_withheld`,
        the same of who decided it and when, where the undo of such a merge rejected it (the
        rejection is timed as the undo: `merges.incident_merge_undo`)."""
        if not can_see_unpublished(user):
            return self.none()
        incidents = self.model._meta.get_field("incident").related_model.objects.seen_by(user)
        revisions = self.filter(incident__in=incidents.values("pk"))
        if can_see_confidential(user):
            return revisions.annotate(proposal_withheld=Value(False), decision_withheld=Value(False))
        merges_in_confidence = apps.get_model("incidents", "IncidentMerge").objects.filter(note_confidential=True)
        return revisions.filter(needs_confidential_access=False).annotate(
            proposal_withheld=Exists(
                merges_in_confidence.filter(Q(revision=OuterRef("pk")) | Q(revision_back=OuterRef("pk")))
            ),
            decision_withheld=Exists(
                merges_in_confidence.filter(revision=OuterRef("pk"), undone_at=OuterRef("decided_at"))
            ),
        )


class ResponseQuerySet(models.QuerySet):
    def visible_to(self, user) -> "ResponseQuerySet":
        """Responses to at least one incident the user may see: a response follows its incidents,
        so a statement about a confidential incident stays as hidden as the incident.

        A response linked to no incident yet (an analyst records the statement first, the incidents
        later) has no incident to follow; it is shown only to staff who may see unpublished
        records, as a draft would be, so nothing half-entered reaches the public."""
        links = self.model._meta.get_field("incidents").remote_field.through.objects.filter(response=OuterRef("pk"))
        incidents = self.model._meta.get_field("incidents").related_model.objects.visible_to(user)
        about_a_visible_incident = Exists(links.filter(incident__in=incidents.values("pk")))
        if can_see_unpublished(user):
            return self.filter(about_a_visible_incident | ~Exists(links))
        return self.filter(about_a_visible_incident)

    def with_links_for(self, user) -> "ResponseQuerySet":
        """The responses with what `user` may see of their links: `visible_source_id` (null for a
        hidden source) and the `incidents` they may see, prefetched. For any response, visible or
        not: a writer who unlinked the last incident they see from a response also about a hidden
        one is answered with it, and must not be shown the hidden incident's public id."""
        incidents = self.model._meta.get_field("incidents").related_model.objects.visible_to(user)
        return self.annotate(visible_source_id=visible_source_id(user, "source_id")).prefetch_related(
            # `confidential`: a reader with Confidential access is recorded as reading those that are.
            # In id order: in none, they came in the table's order, which an edit of one changes, so
            # one version of a response read as two bodies (a partner's copy differed from a read).
            models.Prefetch("incidents", queryset=incidents.only("id", "public_id", "confidential").order_by("id"))
        )


class DuplicatePairQuerySet(models.QuerySet):
    def visible_to(self, user) -> "DuplicatePairQuerySet":
        """Pairs are unpublished work: staff see the pairs both of whose incidents they may see."""
        if not can_see_unpublished(user):
            return self.none()
        # Neither incident among the few hidden ones, rather than both among the visible ones:
        # those are nearly every incident, and each list, count and Home's count read them all.
        # As NOT EXISTS, which PostgreSQL may test on each row as it is read (two lookups by key),
        # so the queue's page, read in score order, stops after its 100 rows, and a pair's page
        # tests its own two incidents; a count still hashes the hidden ones once. NOT IN is always
        # a hashed subplan: at 1,000,000 incidents the 30,000 hidden from staff without Confidential
        # access were hashed to show one pair (40-60 ms), and every waiting pair was read and
        # joined to both its incidents before the best 100 were kept (0.7 s; README, "Possible
        # duplicates").
        return self._without_an_incident_in(apps.get_model("incidents", "Incident").objects.hidden_from(user))

    def _without_an_incident_in(self, incidents: models.QuerySet) -> "DuplicatePairQuerySet":
        """The pairs neither of whose incidents is one of `incidents`: two NOT EXISTS, each of which
        PostgreSQL plans as an anti-join (by key for the first rows, or hashed for a count); one
        NOT (… OR …) over both would not be."""
        return self.exclude(Exists(incidents.filter(pk=OuterRef("incident_a")))).exclude(
            Exists(incidents.filter(pk=OuterRef("incident_b")))
        )

    def with_an_incident_in(self, incidents: models.QuerySet) -> "DuplicatePairQuerySet":
        """The pairs either of whose incidents is one of `incidents` (a filtered queryset of
        incidents): a pair is in a country, or in a date range, when one of its incidents is."""
        # Each pair's two incidents looked up by their key, rather than every incident of the
        # country hashed (two hashes of 80,000 of 200,000 incidents for China, each pair checked
        # against both): 110 ms against 420 ms for a count of the queue by country and dates,
        # and it grows with the pairs, not the incidents (README, "Possible duplicates").
        pair_incidents = incidents.filter(pk__in=[OuterRef("incident_a"), OuterRef("incident_b")])
        return self.filter(Exists(pair_incidents))

    def with_merge_state(self) -> "DuplicatePairQuerySet":
        """Annotate `merged`: whether a merge (not undone) carried out the pair's decision. A pair
        decided "same incident" without one still waits for its merge: refused (a pending revision,
        a version changed meanwhile), or the confirmation page left."""
        merges = apps.get_model("incidents", "IncidentMerge").objects.filter(
            pair=OuterRef("pk"), undone_at__isnull=True
        )
        return self.annotate(merged=Exists(merges))

    def waiting(self) -> "DuplicatePairQuerySet":
        """The pairs that wait for a reviewer: not reviewed yet, or decided "same incident" and not
        merged, which a reviewer must still carry out. Home's count, the queue's default list, its
        "next pair", an incident's page and `find_duplicates`' count all read this one definition:
        a pair decided the same and left unmerged (its merge refused, its confirmation page left)
        was counted nowhere and forgotten.

        "Merged" is read from the incidents: a pair stops waiting once either of its incidents is
        merged, by this pair's merge or another's (the pair then names an incident that lives on in
        its survivor). An undone merge clears `merged_into` and makes its pair "not reviewed" again
        (`merges.incident_merge_undo`), so it waits again."""
        # The few merged incidents, through their partial index: hashed once for a count, looked up
        # by key for the queue's first rows (`_without_an_incident_in`). Joining each pair to both
        # its incidents instead cost half as much again as the pending pairs alone (1.9 s against
        # 1.2 s for a Reviewer's count at 1,000,000 incidents and 63,000 pairs). The decisions are
        # those of the partial index `duplicate_pair_waiting`, which lists them in the queue's order.
        merged = apps.get_model("incidents", "Incident").objects.filter(merged_into__isnull=False)
        return self.filter(decision__in=WAITING_DECISIONS)._without_an_incident_in(merged)


class IncidentMergeQuerySet(models.QuerySet):
    def visible_to(self, user) -> "IncidentMergeQuerySet":
        """Merges are unpublished work: staff see the merges both of whose incidents they could see
        (each by its own review state and confidentiality, the merged one being out of every list)."""
        if not can_see_unpublished(user):
            return self.none()
        incidents = apps.get_model("incidents", "Incident").objects.seen_by(user).values("pk")
        return self.filter(survivor__in=incidents, merged__in=incidents)


class IncidentWithdrawalQuerySet(models.QuerySet):
    def reported_to(self, user) -> "IncidentWithdrawalQuerySet":
        """The withdrawals an incremental sync reports to `user`: of incidents they could see when
        they left (by the state they left in, as `visible_to` says of incidents), each incident's
        latest such, and none of an incident they may see again or follow to its survivor
        (`IncidentQuerySet.synced_to`): that one the sync lists as changed instead. A reader who
        never could see an incident learns nothing of it, not even its public id."""
        withdrawn_from_them = _limit_to_audience(self, user)
        later = withdrawn_from_them.filter(incident_id=OuterRef("incident_id"), id__gt=OuterRef("id"))
        incidents = apps.get_model("incidents", "Incident").objects
        still_seen = incidents.synced_to(user).filter(pk=OuterRef("incident_id"))
        return withdrawn_from_them.exclude(Exists(later)).exclude(Exists(still_seen))


class RecordWithdrawalQuerySet(models.QuerySet):
    def reported_to(self, user, model: type[models.Model]) -> "RecordWithdrawalQuerySet":
        """The withdrawals of `model`'s records (sources, responses) an incremental sync reports to
        `user`, by `IncidentWithdrawalQuerySet.reported_to`'s rule: of records they could see when
        they left (their audience saw them then), each record's latest such, and none they may see
        again (`visible_to`), which the sync lists as changed instead."""
        withdrawn_from_them = self.filter(record_type=model._meta.model_name, audience__lte=audience_of(user))
        later = withdrawn_from_them.filter(record_id=OuterRef("record_id"), id__gt=OuterRef("id"))
        still_seen = model.objects.visible_to(user).filter(pk=OuterRef("record_id"))
        return withdrawn_from_them.exclude(Exists(later)).exclude(Exists(still_seen))


class IncidentRollupQuerySet(models.QuerySet):
    def visible_to(self, user) -> "IncidentRollupQuerySet":
        """The totals over the incidents `user` may see: each total is kept per review state and
        confidentiality, so the incidents' own rule selects them."""
        return _limit_to_audience(self, user)


def estimated_row_count(model) -> int:
    """PostgreSQL's own estimate of a table's rows (kept by autovacuum and ANALYZE): instant on
    any size, where an exact COUNT(*) reads the whole table. -1 until the table is first analysed."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [model._meta.db_table])
        row = cursor.fetchone()
    return row[0] if row else -1
