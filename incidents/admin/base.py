"""What every analysts' screen shares: visibility, the audit history view, estimated counts."""

from collections import defaultdict

from django.contrib import admin
from django.contrib.admin.utils import NestedObjects, unquote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connection, router
from django.http import HttpResponseNotAllowed
from django.template.response import TemplateResponse
from django.utils.functional import cached_property

from incidents.history import history_entries, history_visible_to
from incidents.querysets import estimated_row_count, limit_to_visible

HISTORY_PAGE_SIZE = 100


class VisibilityMixin:
    """Rows, inline rows and every choice offered in a form (select, autocomplete, filter) go through
    `visible_to(user)`, so a user without the confidential permission meets no confidential record."""

    def get_queryset(self, request):
        return limit_to_visible(super().get_queryset(request), request.user)

    def get_field_queryset(self, db, db_field, request):
        queryset = super().get_field_queryset(db, db_field, request)
        if queryset is None:
            queryset = db_field.remote_field.model._default_manager.using(db).all()
        return limit_to_visible(queryset, request.user)


def hidden_references(obj, user) -> list[str]:
    """Names of obj's relations that point to a record the user may not see (a source citing a
    confidential testimony, a response about a confidential incident). Their form fields offer
    only visible records, so showing them would drop the hidden link on save. One query per such
    relation."""
    if obj is None or obj.pk is None:
        return []
    names = []
    for field in [*obj._meta.concrete_fields, *obj._meta.many_to_many]:
        if not field.is_relation or not hasattr(field.related_model._default_manager.none(), "visible_to"):
            continue
        if field.many_to_many:
            linked = getattr(obj, field.name).all()
        elif getattr(obj, field.attname) is not None:
            linked = field.related_model._default_manager.filter(pk=getattr(obj, field.attname))
        else:
            continue
        if linked.exclude(pk__in=limit_to_visible(linked, user).values("pk")).exists():
            names.append(field.name)
    return names


HIDDEN_DEPENDANTS_MESSAGE = (
    "Records you may not see (confidential) depend on this one, so you cannot delete it; "
    "ask a colleague with confidential access."
)


def deletion_touches_hidden_records(objs, user) -> bool:
    """Whether deleting `objs` would delete, or be blocked by, records the user may not see.
    Collects related records as Django's delete page does (one query per relation), then one query
    per model with visibility rules."""
    objs = list(objs)
    if not objs:
        return False
    collector = NestedObjects(using=router.db_for_write(objs[0]._meta.model), origin=objs)
    collector.collect(objs)
    by_model = defaultdict(set)
    for model, instances in collector.data.items():
        by_model[model].update(instance.pk for instance in instances)
    for instance in collector.protected:
        by_model[type(instance)].add(instance.pk)
    for model, pks in by_model.items():
        records = model._default_manager.filter(pk__in=pks)
        if (
            hasattr(records, "visible_to")
            and records.exclude(pk__in=limit_to_visible(records, user).values("pk")).exists()
        ):
            return True
    return False


class TrackedModelAdmin(VisibilityMixin, admin.ModelAdmin):
    """A ModelAdmin whose "History" page shows the audit trail the database triggers record."""

    # Facet counts would run a COUNT per filter choice; on large tables that is the slow part.
    show_facets = admin.ShowFacets.NEVER

    def fields_left_out(self, request, obj) -> set[str]:
        """Fields not to show on this object's page: links to records the user may not see, which
        the form could neither show nor keep (they would be cleared on save)."""
        return set(hidden_references(obj, request.user))

    def get_fieldsets(self, request, obj=None):
        left_out = self.fields_left_out(request, obj)
        fieldsets = super().get_fieldsets(request, obj)
        if not left_out:
            return fieldsets
        return [(name, {**options, "fields": _without(options["fields"], left_out)}) for name, options in fieldsets]

    def get_deleted_objects(self, objs, request):
        # Django lists every record a deletion would take with it or is blocked by; when some of
        # them are hidden from the user, naming them would reveal them, and deleting them would
        # destroy what the user cannot see. Refuse, without names.
        if deletion_touches_hidden_records(objs, request.user):
            return [], {}, set(), [HIDDEN_DEPENDANTS_MESSAGE]
        return super().get_deleted_objects(objs, request)

    def history_view(self, request, object_id, extra_context=None):
        # History is evidence: the page only reads, and nothing in the admin can change it.
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_or_change_permission(request, obj):
            raise PermissionDenied
        page = Paginator(history_visible_to(obj, request.user), HISTORY_PAGE_SIZE).get_page(request.GET.get("p"))
        context = {
            **self.admin_site.each_context(request),
            "title": f"History: {obj}",
            "subtitle": None,
            "object": obj,
            "opts": self.opts,
            "entries": history_entries(page.object_list, request.user),
            "page": page,
            "preserved_filters": self.get_preserved_filters(request),
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/incidents/audit_history.html", context)


def _without(fields, hidden: set[str]) -> list:
    """A fieldset's field list without the hidden names, keeping rows of fields on one line."""
    kept = []
    for field in fields:
        if isinstance(field, (list, tuple)):
            row = [name for name in field if name not in hidden]
            if row:
                kept.append(tuple(row))
        elif field not in hidden:
            kept.append(field)
    return kept


class EstimatedCountPaginator(Paginator):
    """Pages without an exact COUNT(*) over the whole table.

    On the unfiltered list PostgreSQL's own row estimate (pg_class.reltuples) stands in for the
    count; on a filtered list the planner's estimate does when it expects more than
    `exact_count_below` rows, where an exact count would read most of the table and an analyst
    only needs the order of magnitude. Smaller results are counted exactly, up to
    `exact_count_below` rows: the planner can misjudge a search, and the count must not then read
    the whole table."""

    exact_count_below = 10_000

    # How `count` was obtained, for the page to say "about" or "at least": exact, estimate, at_least.
    count_kind = "exact"

    @cached_property
    def count(self):
        queryset = self.object_list
        if queryset.query.is_empty():
            # `none()`, e.g. a search whose words no incident has: no SQL to estimate or run.
            return 0
        unfiltered = not queryset.query.where
        estimate = estimated_row_count(queryset.model) if unfiltered else self._planner_estimate(queryset)
        if estimate >= self.exact_count_below:
            self.count_kind = "estimate"
            return estimate
        counted = queryset.order_by()[: self.exact_count_below].count()
        if counted == self.exact_count_below:
            self.count_kind = "at_least"
        return counted

    @staticmethod
    def _planner_estimate(queryset) -> int:
        sql, params = queryset.order_by().values("pk").query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
            plan = cursor.fetchone()[0]
        return int(plan[0]["Plan"]["Plan Rows"])
