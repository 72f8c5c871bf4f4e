"""Who may see what, and the reads every door shares.

Visibility is decided here and only here: the admin, the API, CSV exports, statistics and public
pages all start from `visible_to(user)`, so a rule changed here holds everywhere.
"""

from datetime import date

from django.db import models
from django.db.models import Max, Min, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce

CONFIDENTIAL_PERMISSION = "incidents.view_confidential"


def can_see_confidential(user) -> bool:
    return bool(user and user.is_authenticated and user.is_active and user.has_perm(CONFIDENTIAL_PERMISSION))


def can_see_unpublished(user) -> bool:
    """Staff who may view incidents see drafts and records in review; everyone else sees published ones."""
    return bool(
        user and user.is_authenticated and user.is_active and user.is_staff and user.has_perm("incidents.view_incident")
    )


def can_see_exact_locations(user) -> bool:
    """Staff readers see a sensitive place's exact coordinates; everyone else sees the coarsened
    `Place.public_coordinates`, so an informant's village is never published by a list or a map."""
    return can_see_unpublished(user)


class SourceQuerySet(models.QuerySet):
    def visible_to(self, user) -> "SourceQuerySet":
        if can_see_confidential(user):
            return self
        return self.filter(confidential=False)


class ClaimQuerySet(models.QuerySet):
    def visible_to(self, user) -> "ClaimQuerySet":
        """Claims on incidents the user may see, hiding confidential claims and claims of
        confidential sources from users without the confidential permission."""
        incidents = self.model._meta.get_field("incident").related_model.objects.visible_to(user)
        claims = self.filter(incident__in=incidents.values("pk"))
        if can_see_confidential(user):
            return claims
        return claims.filter(confidential=False, source__confidential=False)


class IncidentQuerySet(models.QuerySet):
    def visible_to(self, user) -> "IncidentQuerySet":
        incidents = self
        if not can_see_unpublished(user):
            incidents = incidents.filter(review_state="published")
        if not can_see_confidential(user):
            incidents = incidents.filter(confidential=False)
        return incidents

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

    def with_claim_range(self, user) -> "IncidentQuerySet":
        """Annotate `claim_people_min`/`claim_people_max`: the span of figures that the sources the
        user may see report, beside the analysts' own estimate. One subquery each, no join, so it
        composes with any filter and keeps one row per incident."""
        claims = (
            self.model._meta.get_field("claims")
            .related_model.objects.visible_to(user)
            .filter(incident=OuterRef("pk"))
            .order_by()
            .values("incident")
        )
        low = Coalesce("people_count_min", "people_count")
        high = Coalesce("people_count_max", "people_count")
        return self.annotate(
            claim_people_min=Subquery(claims.annotate(value=Min(low)).values("value")),
            claim_people_max=Subquery(claims.annotate(value=Max(high)).values("value")),
        )
