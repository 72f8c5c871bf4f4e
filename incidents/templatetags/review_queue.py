"""What waits for a Reviewer, for the admin's Home: the incidents in review, the pending revisions
and the duplicate pairs waiting (not reviewed, or decided the same and not merged), each counted
from its list's own rows (the ModelAdmin's queryset, so a reader counts exactly what that list
shows them) and linked to the list so filtered. Home listed the models alone: what waited was
found by opening each list and picking its filter."""

from urllib.parse import urlencode

from django import template
from django.contrib import admin
from django.urls import reverse

from incidents.models import DuplicatePair, Incident, IncidentRevision

register = template.Library()

# (model, filter of its list, the rows that filter selects, what one row is, what many are)
QUEUES = [
    (
        Incident,
        {"review_state__exact": "in_review"},
        lambda incidents: incidents.filter(review_state="in_review"),
        "incident in review",
        "incidents in review",
    ),
    (
        IncidentRevision,
        {"state__exact": "pending"},
        lambda revisions: revisions.filter(state="pending"),
        "proposed revision",
        "proposed revisions",
    ),
    (
        DuplicatePair,
        {"decision__exact": "waiting"},
        lambda pairs: pairs.waiting(),
        "duplicate pair to review or merge",
        "duplicate pairs to review or merge",
    ),
]


@register.simple_tag(takes_context=True)
def waiting_for_review(context) -> list[dict]:
    """The queues the reader may open, each as {"count", "label", "url"}. Runs one count query each."""
    request = context["request"]
    waiting = []
    for model, lookup, select, one, many in QUEUES:
        model_admin = admin.site.get_model_admin(model)
        if not model_admin.has_view_permission(request):
            continue
        count = select(model_admin.get_queryset(request)).count()
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist") + "?" + urlencode(lookup)
        waiting.append({"count": count, "label": one if count == 1 else many, "url": url})
    return waiting
