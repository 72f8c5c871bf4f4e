"""Reads that carry rules, for every door: given the reading `user` and plain filter values (a
query string's, a command's options), never an HTTP request. Visibility comes from `visible_to`;
the filters' meaning from the one IncidentFilterSet."""

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from incidents.filters import IncidentFilterSet
from incidents.models import Incident


def incidents_read_by(user, filters: Mapping[str, Any]) -> QuerySet:
    """The incidents a list or an export starts from: those `user` may see, and, for an incremental
    sync (`updated_since`), the merged ones they may follow too (`IncidentQuerySet.synced_to`),
    each reporting its `merged_into`."""
    if filters.get("updated_since"):
        return Incident.objects.synced_to(user)
    return Incident.objects.visible_to(user)


def incident_filterset(*, user, filters: Mapping[str, Any], following_merges: bool = True) -> IncidentFilterSet:
    """The filter set bound to `filters` over the incidents `user` may see, validated: raises
    ValidationError naming each bad parameter. Runs a query only for filters that name a record
    (type, place, source, organization).

    `following_merges`: a sync (`updated_since`) also reports the merged incidents `user` may
    follow (`incidents_read_by`), for the doors that copy data (the API list, the CSV export);
    without it, as the public pages, never a merged incident: they list, count and download each
    event once, under its survivor."""
    incidents = incidents_read_by(user, filters) if following_merges else Incident.objects.visible_to(user)
    filterset = IncidentFilterSet(filters, queryset=incidents, user=user)
    if not filterset.is_valid():
        # The errors themselves, not their words: a door may say one by its code in its own terms
        # (the public pages name the dates of a reversed range by their labels).
        raise ValidationError(filterset.form.errors.as_data())
    return filterset


def incidents_matching(*, user, filters: Mapping[str, Any]) -> QuerySet:
    """The incidents `user` may see that `filters` select; see `incident_filterset`."""
    return incident_filterset(user=user, filters=filters).qs
