"""Merging two incidents that report one event, so that nothing is lost, and undoing it.

A Reviewer who decides that a duplicate pair is "same incident" merges it: the surviving incident
takes every claim, place, victim group, involvement and response link of the other, hidden ones
included (a merge that left behind what its author cannot see would lose it from every view). Two
claims of one source (one per incident) are both kept, the moved one marked `merge_conflict` for a
person to resolve. The survivor's dates and counts are not changed: what both incidents say is
proposed as an `IncidentRevision` for a Reviewer to accept or reject. The merged incident is kept,
with `merged_into` set: every read leaves it out (`IncidentQuerySet.visible_to`) and its address
leads to the survivor (`redirect_target`).

Each merge is an `IncidentMerge` row holding exactly which rows moved, so `incident_merge_undo`
puts each back. History (pghistory) records every row changed, with the user and the merge.
"""

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import pghistory
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from incidents import duplicates, services
from incidents.history import set_incident_update_triggers
from incidents.models import (
    KEPT_VERSION_FIELDS,
    Claim,
    CountQualifier,
    DatePrecision,
    DuplicateDecision,
    DuplicatePair,
    Incident,
    IncidentMerge,
    IncidentPlace,
    IncidentRevision,
    IncidentWithdrawal,
    Involvement,
    Response,
    ReviewState,
    RevisionState,
    VictimGroup,
    latest_day_begun,
    validate_ranges,
)
from incidents.querysets import (
    EVERY_CHANGE,
    STAFF_WITHOUT_CONFIDENTIAL_ACCESS,
    THE_PUBLIC,
    VersionFields,
    can_see_confidential,
    can_see_unpublished,
    place_path,
    version_seen_by,
    versions_told,
)
from incidents.text_fields import normal_text

ResponseIncident = Response.incidents.through


class MergeRefused(Exception):
    """The merge or its undo cannot be done in the state the records are in now (already merged,
    undone, decided "different", changed since the page was read); doors answer 409."""


@dataclass
class MergePlan:
    """What merging `merged` into `survivor` moves, as `user` may see it: the confirmation page and
    the API's answer show this and nothing hidden."""

    survivor: Incident
    merged: Incident
    claims: list[Claim] = field(default_factory=list)
    conflicts: list[Claim] = field(default_factory=list)
    places: list[IncidentPlace] = field(default_factory=list)
    victim_groups: list[VictimGroup] = field(default_factory=list)
    involvements: list[Involvement] = field(default_factory=list)
    responses: list[Response] = field(default_factory=list)
    # Field name -> (the survivor's value now, the value proposed from both incidents).
    proposal: dict[str, tuple[Any, Any]] = field(default_factory=dict)


def default_survivor(first: Incident, second: Incident) -> Incident:
    """The incident that survives unless the Reviewer chooses: a published one over one that is
    not (its address is the one readers know), else the older (lower id)."""
    return min(first, second, key=lambda incident: (incident.review_state != ReviewState.PUBLISHED, incident.pk))


def _seen(user, incident_ids) -> dict[int, Incident]:
    """The incidents of `incident_ids` that `user` may see, and the merged ones they may follow to
    their survivor (`IncidentQuerySet.synced_to`): one merged into an incident hidden from them has
    left their sight as a deleted one has, and is not told of."""
    return {incident.pk: incident for incident in Incident.objects.synced_to(user).filter(pk__in=incident_ids)}


def _require_reviewer(user, doing: str) -> None:
    if not (services.may_publish(user) and user.has_perm("incidents.change_incident")):
        raise PermissionDenied(f"Only a Reviewer may {doing}.")


def pair_incidents(*, user, pair: DuplicatePair) -> tuple[Incident, Incident]:
    """The pair's incidents if `user` may see both (merged ones they may follow included, so a
    second merge hears why it is refused); otherwise RecordNotFound, as if the pair did not exist:
    "merged into another incident" told a Reviewer that an incident they saw had joined one hidden
    from them (a confidential one, since they see drafts), a reason `withdrawn/` never gives."""
    incidents = _seen(user, [pair.incident_a_id, pair.incident_b_id]) if can_see_unpublished(user) else {}
    if len(incidents) != 2:
        raise services.RecordNotFound(f"No duplicate pair {pair.pk}.")
    return incidents[pair.incident_a_id], incidents[pair.incident_b_id]


def _sides(pair_incidents: tuple[Incident, Incident], survivor_public_id: str | None) -> tuple[Incident, Incident]:
    first, second = pair_incidents
    if not survivor_public_id:
        survivor = default_survivor(first, second)
    else:
        by_id = {incident.public_id: incident for incident in pair_incidents}
        if survivor_public_id not in by_id:
            raise ValidationError(
                {"survivor": [f"Choose {first.public_id} or {second.public_id}, not {survivor_public_id!r}."]}
            )
        survivor = by_id[survivor_public_id]
    return survivor, (second if survivor is first else first)


def _refusals(user, survivor: Incident, merged: Incident, pair: DuplicatePair) -> None:
    for incident in (survivor, merged):
        if incident.merged_into_id is not None:
            # Named only to a reviewer who may see it: it may have been made confidential since.
            target = (
                Incident.objects.seen_by(user)
                .filter(pk=incident.merged_into_id)
                .values_list("public_id", flat=True)
                .first()
            )
            raise MergeRefused(
                f"{incident.public_id} was already merged into {target or 'another incident'}; undo that merge first."
            )
    if pair.decision == DuplicateDecision.DIFFERENT:
        raise MergeRefused(
            f"This pair was decided to be different incidents; decide it again before merging {merged.public_id}."
        )
    if decided_apart := duplicates.different_through_merges([survivor.pk, merged.pk]):
        # Not named: the incidents decided apart may be hidden from this Reviewer (merged while
        # confidential, their survivor public since), who then hears no more than that a Reviewer
        # who may see them must decide, as an undo after hidden states says.
        decided = DuplicatePair.objects.filter(pk__in=decided_apart.values()).values_list("incident_a", "incident_b")
        named = {incident_id for pair in decided for incident_id in pair}
        if Incident.objects.seen_by(user).filter(pk__in=named).count() < len(named):
            raise MergeRefused(
                f"{survivor.public_id} or {merged.public_id} holds what only staff with Confidential access may "
                "see: a Reviewer with Confidential access must merge these."
            )
        raise MergeRefused(
            f"An incident merged into {survivor.public_id} or {merged.public_id} was decided to be a different "
            "incident from the other, or from one merged into it: undo that merge, or decide that pair again, "
            "before merging these."
        )
    pending = IncidentRevision.objects.visible_to(user).filter(incident=merged, state=RevisionState.PENDING)
    if pending.exists():
        # Those this Reviewer may not see are not waited for (refusing would tell of them): they
        # stay in the queue of those who may, to be rejected (`incident_revision_accept`).
        raise MergeRefused(
            f"{merged.public_id} has pending revisions (proposed edits awaiting review): accept or reject them "
            f"first, or keep {merged.public_id} as the survivor, so that nothing proposed for it is lost."
        )
    for incident in (survivor, merged):
        if incident.date_start > latest_day_begun():
            # Written before the rule (`models.validate_day_begun`): the survivor's proposed dates,
            # made of both incidents', were refused naming date_start, a field the merge never sends,
            # and not the incident whose year to correct.
            raise MergeRefused(
                f"{incident.public_id} starts on {incident.date_start:%Y-%m-%d}, a day that has not begun anywhere "
                "yet: correct its year before merging."
            )
    if survivor.confidential != merged.confidential:
        confidential, public = (survivor, merged) if survivor.confidential else (merged, survivor)
        raise MergeRefused(
            f"{confidential.public_id} is confidential and {public.public_id} is not: a merge would "
            "publish confidential evidence or hide public evidence. Make them alike first."
        )


def merge_plan(*, user, pair: DuplicatePair, survivor: str | None = None) -> MergePlan:
    """What merging `pair` (into `survivor`, a public id; by default `default_survivor`) would move
    and propose, as `user` may see it. Raises as `incident_merge` would, without writing."""
    survivor_incident, merged = _sides(pair_incidents(user=user, pair=pair), survivor)
    _require_reviewer(user, "merge incidents")
    _refusals(user, survivor_incident, merged, pair)
    return _plan(user, survivor_incident, merged)


def _plan(user, survivor: Incident, merged: Incident) -> MergePlan:
    """The rows of `merged` that move to `survivor`: those `user` may see (`user` None: all)."""
    claims = Claim.objects.filter(incident=merged).select_related("source__publisher").order_by("id")
    if user is not None:
        claims = claims.disclosed_to(user)
    held = set(Claim.objects.filter(incident=survivor).values_list("source_id", "confidential"))
    survivor_places = IncidentPlace.objects.filter(incident=survivor).values("place")
    survivor_roles = set(Involvement.objects.filter(incident=survivor).values_list("organization_id", "role"))
    claims = list(claims)
    return MergePlan(
        survivor=survivor,
        merged=merged,
        claims=claims,
        conflicts=[claim for claim in claims if (claim.source_id, claim.confidential) in held],
        places=list(
            IncidentPlace.objects.filter(incident=merged)
            .exclude(place__in=survivor_places)
            .select_related("place")
            # By path, as the confirmation names them: "Tumen" for the other country's Tumen.
            .annotate(place_path=place_path("place_id"))
            .order_by("place_path", "id")
        ),
        victim_groups=list(VictimGroup.objects.filter(incident=merged).order_by("id")),
        involvements=[
            involvement
            for involvement in Involvement.objects.filter(incident=merged).select_related("organization").order_by("id")
            if (involvement.organization_id, involvement.role) not in survivor_roles
        ],
        responses=list(
            Response.objects.filter(incidents=merged).exclude(incidents=survivor).select_related("organization")
        ),
        proposal=_proposal(survivor, merged),
    )


# What a merge recomputes from both incidents and proposes for the survivor, in the groups read
# together: the dates' range and precision, and a count's best estimate, range and qualifier (an
# exact count is one figure). An undo proposes back a group whole or not at all.
PROPOSED_GROUPS = (
    ("date_start", "date_end", "date_precision"),
    ("people_count", "people_count_min", "people_count_max", "count_qualifier"),
)
PROPOSED_FIELDS = tuple(name for group in PROPOSED_GROUPS for name in group)


def _proposal(survivor: Incident, merged: Incident) -> dict[str, tuple[Any, Any]]:
    """The survivor's dates and counts recomputed from both incidents, where they differ from its
    own: the days both ranges share when they overlap (else the range covering both), and the
    counts' range spanning both incidents' ranges, the best estimate the survivor's when it has one.
    Read from the incidents, never the claims, so it shows nothing hidden."""
    start, end = max(survivor.date_start, merged.date_start), min(survivor.date_end, merged.date_end)
    if start > end:
        start, end = min(survivor.date_start, merged.date_start), max(survivor.date_end, merged.date_end)
    proposed: dict[str, Any] = {
        "date_start": start,
        "date_end": end,
        "date_precision": _precision(survivor, merged, start, end),
    }
    both = (survivor, merged)
    # Each incident's range, a missing bound standing for its best estimate, else its other bound:
    # the least it says ("at least 40" is 40 to 40, as statistics read it, "at most 30" 30 to 30).
    # Read as the best estimate alone, a bound alone spanned nothing on its other side: "exactly
    # 10" and "at least 40" proposed nothing (the 40 dropped without a word), and "at least 40"
    # and "at most 30" proposed 40 to 30, which refused the merge over a range it never had.
    lows = [
        _first_known(incident.people_count_min, incident.people_count, incident.people_count_max) for incident in both
    ]
    highs = [
        _first_known(incident.people_count_max, incident.people_count, incident.people_count_min) for incident in both
    ]
    lows, highs = [low for low in lows if low is not None], [high for high in highs if high is not None]
    figured = next((incident for incident in both if incident.people_count is not None), None)
    counted = [incident for incident in both if any(getattr(incident, name) is not None for name in _FIGURES)]
    if len(counted) == 1:
        # One alone gives a count: its own, as it gives it ("at least 40" stays so, not 40 to 40).
        proposed.update({name: getattr(counted[0], name) for name in (*_FIGURES, "count_qualifier")})
    elif lows or highs:
        best = figured.people_count if figured else None
        low, high = min(lows, default=None), max(highs, default=None)
        # A bound equal to the best estimate says nothing more: left unset.
        low = low if low is not None and (best is None or low < best) else None
        high = high if high is not None and (best is None or high > best) else None
        qualifier = (figured or survivor).count_qualifier
        if qualifier == CountQualifier.EXACT and (best is None or low is not None or high is not None):
            # "Exactly 40" and "about 50" of one event make a range, which no exact count has.
            qualifier = CountQualifier.ABOUT
        elif best is None and survivor.count_qualifier != merged.count_qualifier:
            # "At least 40" and "at most 30" of one event: neither's word holds for 30 to 40.
            qualifier = CountQualifier.ABOUT
        proposed.update(people_count=best, people_count_min=low, people_count_max=high, count_qualifier=qualifier)
    return {
        name: (getattr(survivor, name), value) for name, value in proposed.items() if getattr(survivor, name) != value
    }


_FIGURES = ("people_count", "people_count_min", "people_count_max")


def _first_known(*values):
    return next((value for value in values if value is not None), None)


def _precision(survivor: Incident, merged: Incident, start: date, end: date) -> str:
    for incident in (survivor, merged):
        if (incident.date_start, incident.date_end) == (start, end):
            return incident.date_precision
    return DatePrecision.DAY if start == end else DatePrecision.RANGE


def incident_merge(
    *,
    user,
    pair: DuplicatePair,
    survivor: str | None = None,
    note: str = "",
    survivor_version: int | None = None,
    merged_version: int | None = None,
    told: VersionFields | None = None,
) -> IncidentMerge:
    """Merge the pair's incidents into `survivor` (a public id; by default `default_survivor`), by a
    Reviewer who may see both: move everything of the other (hidden rows too), mark claims of a
    source both had as conflicts, set `merged_into`, decide the pair "same incident", and propose
    the recomputed dates and counts as a revision of the survivor. One transaction.

    RecordNotFound if `user` may not see both incidents; PermissionDenied without the Reviewer's
    role; ValidationError for a survivor outside the pair; MergeRefused if either incident is
    merged already, the pair was decided "different", their confidentiality differs, or either
    changed since the versions given (the page the Reviewer confirmed; as `told` counts them, the
    audience the Reviewer read them as: `querysets.EditedVersion`). The same Reviewer's same merge
    sent again returns the merge made (`_made_as_asked`)."""
    survivor_incident, merged = _sides(pair_incidents(user=user, pair=pair), survivor)
    _require_reviewer(user, "merge incidents")
    services.raise_text_errors(note=note)
    user_id = services._acting_user_id(user)
    with transaction.atomic(), pghistory.context(user=user_id):
        # Both rows locked in id order, so two merges of overlapping pairs wait for each other; with
        # the incidents merged into either, which follow the merged one (`_followers_moved`), so an
        # undo of one of their merges, which locks it first, waits rather than deadlocks.
        pair_ids = [pair.incident_a_id, pair.incident_b_id]
        locked = Incident.objects.select_for_update(of=("self",)).filter(
            Q(pk__in=pair_ids) | Q(merged_into__in=pair_ids)
        )
        locked = {incident.pk: incident for incident in locked.order_by("pk") if incident.pk in pair_ids}
        if len(locked) != 2:
            # One was deleted by a write these locks waited for.
            raise services.RecordNotFound(f"No duplicate pair {pair.pk}.")
        survivor_incident, merged = locked[survivor_incident.pk], locked[merged.pk]
        # Withdrawn meanwhile by a rescoring (`duplicates._refresh`), it is gone: nothing is merged.
        pair = services.locked_or_not_found(DuplicatePair.objects.all(), pair.pk, name="duplicate pair")
        if done := _made_as_asked(user, pair, survivor_incident, merged, note):
            return done
        _refusals(user, survivor_incident, merged, pair)
        for incident, expected, field in (
            (survivor_incident, survivor_version, "survivor_version"),
            (merged, merged_version, "merged_version"),
        ):
            if expected is None:
                continue
            try:
                services.check_version(incident, expected, reader=user, field=field, told=told)
            except services.AccessChangedSinceRead as refusal:
                raise MergeRefused(str(refusal)) from None
            except services.VersionConflict:
                raise MergeRefused(
                    f"{incident.public_id} changed since you looked at it (now version "
                    f"{version_seen_by(incident, user, told)}, you saw "
                    f"version {expected}): review the merge again."
                ) from None
        _lock_what_moving_links_refer_to(merged)
        plan = _plan(None, survivor_incident, merged)
        # Judged before anything moves: the claims both incidents hold as the Reviewer compared them.
        in_confidence = duplicates.decided_in_confidence(user=user, incident_ids=[survivor_incident.pk, merged.pk])
        merge = IncidentMerge.objects.create(
            survivor=survivor_incident,
            merged=merged,
            pair=pair,
            pair_before=_decision_of(pair),
            merged_by_id=user_id,
            note=note,
            note_confidential=in_confidence,
        )
        with pghistory.context(merge=merge.pk):
            # Saved before its rows move, so that their triggers count them as this change for each
            # audience (`disclosed_*`): saved after, the survivor's version for readers without
            # Confidential access stayed put, and their stale edit or revision deleted a moved claim.
            _save_changed(survivor_incident, user_id)
            merge.moved = _move(plan)
            merged.merged_into = survivor_incident
            _save_changed(merged, user_id, "merged_into")
            merge.moved["followers"] = _followers_moved(merged, survivor_incident, user_id)
            if in_confidence:
                _writer_withheld([survivor_incident.pk, merged.pk, *merge.moved["followers"]])
            _responses_about_merged_changed(merged, survivor_incident, merge.moved["responses"])
            DuplicatePair.objects.filter(pk=pair.pk).update(
                decision=DuplicateDecision.SAME,
                decided_by_id=user_id,
                decided_at=timezone.now(),
                note=note,
                note_confidential=in_confidence,
            )
            # Its versions as the moves' triggers left them, which the revision is based on.
            _versions_read_again(survivor_incident)
            merge.revision = _propose(plan, user)
            merge.save(update_fields=["moved", "revision"])
        # The survivor holds the other's places and words now; the merged one's waiting pairs go.
        duplicates.rescore_after_commit([survivor_incident.pk, merged.pk])
    return merge


def _followers_moved(merged: Incident, survivor: Incident, user_id: int | None) -> list[int]:
    """Point the incidents merged into `merged` before (its followers) at `survivor`, where they now
    live on; their ids. A merged incident's `merged_into` always names a live incident, so that
    every door that follows it (its address's redirect, an incremental sync, the withdrawals, the
    export) reaches, in one step, the incident that holds what it said, as the reader sees it: left
    on `merged`, a merged incident's address led to another merged one's, and on to a 404 once the
    live one left the reader's sight, which the sync never reported. A new version of each, by the
    merging user: a partner's copy follows. The undo points them back."""
    followers = list(Incident.objects.select_for_update(of=("self",)).filter(merged_into=merged).order_by("pk"))
    for follower in followers:
        follower.merged_into = survivor
        _save_changed(follower, user_id, "merged_into")
    _withdrawn_from_who_followed(followers, merged)
    return [follower.pk for follower in followers]


def _withdrawn_from_who_followed(followers: list[Incident], merged: Incident) -> None:
    """Record that each of `followers` left the sight of the readers who followed it to `merged`:
    in the state a reader had to see both in (its own, `merged`'s where it is published), as the
    incidents' trigger records those merged into an incident that leaves their sight (migration
    0063). A sync reports it only to those who may no longer follow it to the survivor
    (`IncidentWithdrawalQuerySet.reported_to`): moved onto a draft, it answered 404 to the public
    while `withdrawn/` never named it, and a partner's copy kept it. (The trigger records a merge,
    not a merged incident moving on.)"""
    IncidentWithdrawal.objects.bulk_create(
        IncidentWithdrawal(
            incident_id=follower.pk,
            public_id=follower.public_id,
            review_state=(
                merged.review_state if follower.review_state == ReviewState.PUBLISHED else follower.review_state
            ),
            confidential=follower.confidential or merged.confidential,
            withdrawn_at=timezone.now(),
        )
        for follower in followers
    )


def _responses_about_merged_changed(merged: Incident, survivor: Incident, linked: list[int]) -> None:
    """A new version of the responses about `merged`: every reader's list of their incidents loses
    `merged` with the merge (a merged incident is never shown), and shows the survivor instead where
    the response's link moved to it, and shows `merged` again with the undo; so a partner's copy is
    read again and a stale edit meets a version conflict, as `services._links_shown_changed` does
    for an incident made confidential. (The moved links' own triggers told no reader: a response
    about the merged incident alone showed the survivor in its place at the same version.) Readers
    without Confidential access are told it unless `merged` is confidential (then so is the
    survivor: they saw neither); the public unless it may not see `merged` (a draft, or
    confidential: its list never showed it), but for those `linked` to the survivor by the merge
    (or unlinked by the undo) when the public sees the survivor: a draft merged into a published
    incident shows the survivor in its place, which was told only to staff, so a partner's copy
    kept the list without it."""
    about_merged = Response.objects.filter(incidents=merged)
    if merged.confidential:
        told = EVERY_CHANGE
    elif services.shown_to_the_public(merged):
        told = THE_PUBLIC
    else:
        told = STAFF_WITHOUT_CONFIDENTIAL_ACCESS
    shown_the_survivor = (
        linked if told == STAFF_WITHOUT_CONFIDENTIAL_ACCESS and services.shown_to_the_public(survivor) else []
    )
    services.new_version_of(about_merged.exclude(pk__in=shown_the_survivor), told=told)
    services.new_version_of(about_merged.filter(pk__in=shown_the_survivor), told=THE_PUBLIC)


def _save_changed(incident: Incident, user_id: int | None, *fields: str) -> None:
    """A new version of `incident` by the merging user: what it holds changed, so a writer who read
    it before gets a version conflict and an incremental sync sees it again."""
    incident.updated_by_id = user_id
    incident.save(update_fields=[*fields, "version", "updated_by", "updated_at"])


def _versions_read_again(incident: Incident) -> None:
    """`incident`'s versions and change times of every audience as stored: the triggers of the rows
    moved after its save moved those of readers without Confidential access and the public's."""
    incident.refresh_from_db(fields=["version", "updated_at", *KEPT_VERSION_FIELDS, "disclosed_updated_by"])


def _writer_withheld(incident_ids: list[int]) -> None:
    """Staff without Confidential access are told no last writer (`disclosed_updated_by` null) of
    each of `incident_ids` whose last change they see is that of a merge, or an undo, decided in
    confidence, whose record withholds who made it: an incremental sync's row of the merged incident
    (`updated_by`) named the Reviewer with that access. Once the merge's saves are written (their
    triggers set it); a write of that column alone is no event in the history."""
    set_incident_update_triggers(enabled=False)
    Incident.objects.filter(pk__in=incident_ids, disclosed_updated_at=F("updated_at")).update(disclosed_updated_by=None)
    set_incident_update_triggers(enabled=True)


def _made_as_asked(user, pair: DuplicatePair, survivor: Incident, merged: Incident, note: str) -> IncidentMerge | None:
    """The merge this request asks for, if it stands as its own Reviewer made it: this pair, into
    this survivor (still no other's), with this note, by `user`, not undone. That is a confirmation
    pressed twice, or an API call retried after its answer was lost; it was refused "already merged",
    to the Reviewer whose merge had just been made, who then could not tell whether it had been. It is
    answered as the merge made, as a save sent twice is (`services.VersionConflict.by_the_writer_alone`);
    its versions are not compared, since nothing more is written. Another Reviewer's merge, another
    survivor or note, or a merge undone since, is still refused (`_refusals`)."""
    if merged.merged_into_id != survivor.pk or survivor.merged_into_id is not None:
        return None
    merge = (
        IncidentMerge.objects.visible_to(user)
        # At most one: a merged incident has one merge not undone (`incident_merge_one_active`).
        .filter(pair=pair, survivor=survivor, merged=merged, undone_at__isnull=True)
        .filter(merged_by_id=services._acting_user_id(user))
        .first()
    )
    if merge is None or normal_text(merge.note, one_line=False) != normal_text(note, one_line=False):
        return None
    return merge


def _lock_what_moving_links_refer_to(incident: Incident) -> None:
    """Share-lock, until the commit, what the links of `incident` refer to: its places (and those
    above), the organizations it involves and that publish its sources, its sources (and those they
    cite), and its type. A merge moves some of them, or its undo moves them back. Two queries.

    Links move with an UPDATE of their incident alone, which the row triggers that lock what a link
    refers to (lock_place, lock_organization, lock_source, lock_publisher) do not see: a merge run
    while a reviewer changed a place's country, renamed an organization or made a source
    confidential kept the record as it was in the kept export row and search words of the incident
    the links reached, since the reviewer's refresh saw the links where they were. Locked here,
    before the first move, rather than by those triggers watching the incident as well: each move's
    statement refreshes both incidents' kept rows, and a lock taken by a later one (the places,
    after the claims) while the merge held those rows would deadlock with a reviewer whose refresh
    waits for them holding the record (migration 0050, on why a save that keeps the link locks
    nothing). In the order the importer takes them: the sources first (migration 0052), so that the
    publishers locked next are those the sources keep. All of the incident's links, not only those
    that move: more, never less, in one query."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT incident_sources_lock(ARRAY[%s]::bigint[])", [incident.pk])
        cursor.execute("SELECT incident_links_lock(ARRAY[%s]::bigint[])", [incident.pk])


def _decision_of(pair: DuplicatePair) -> dict[str, Any]:
    return {
        "decision": pair.decision,
        "decided_by_id": pair.decided_by_id,
        "decided_at": pair.decided_at.isoformat() if pair.decided_at else None,
        "note": pair.note,
        "note_confidential": pair.note_confidential,
    }


def _decision_before(merge: IncidentMerge) -> dict[str, Any]:
    """The pair's decision as the undo leaves it: as it was before the merge, so that a pair a
    reviewer had marked "unsure" is unsure again, by them and when they said so; back to the queue
    (pending) if it was pending, or "same incident", the decision the merge carried out and the undo
    withdraws. Who decided is kept while their account is, and so is whether the note was written in
    confidence (migration 0083 judged those kept before)."""
    before = merge.pair_before
    note = {"note": before["note"], "note_confidential": before["note_confidential"]}
    if before["decision"] in (DuplicateDecision.PENDING, DuplicateDecision.SAME):
        return {"decision": DuplicateDecision.PENDING, "decided_by": None, "decided_at": None, **note}
    return {
        "decision": before["decision"],
        "decided_by": get_user_model().objects.filter(pk=before["decided_by_id"]).first(),
        "decided_at": datetime.fromisoformat(before["decided_at"]),
        **note,
    }


def _move(plan: MergePlan) -> dict[str, list[int]]:
    """Move the plan's rows (made with every row: `_plan(None, …)`) to the survivor; the ids moved, by kind."""
    survivor = plan.survivor
    conflicts = [claim.pk for claim in plan.conflicts if not claim.merge_conflict]
    moved = {
        "claims": [claim.pk for claim in plan.claims],
        "conflicts": conflicts,
        "places": [link.pk for link in plan.places],
        "victim_groups": [group.pk for group in plan.victim_groups],
        "involvements": [involvement.pk for involvement in plan.involvements],
        "responses": [response.pk for response in plan.responses],
    }
    # Marked in the same statement that moves them, so the one-claim-per-source indexes never see
    # two unmarked claims of a source on the survivor.
    Claim.objects.filter(pk__in=conflicts).update(incident=survivor, merge_conflict=True)
    Claim.objects.filter(pk__in=moved["claims"]).exclude(pk__in=conflicts).update(incident=survivor)
    IncidentPlace.objects.filter(pk__in=moved["places"]).update(incident=survivor)
    VictimGroup.objects.filter(pk__in=moved["victim_groups"]).update(incident=survivor)
    Involvement.objects.filter(pk__in=moved["involvements"]).update(incident=survivor)
    # The merged incident keeps its own links to responses (it is kept whole, apart from what moves);
    # the survivor gains a link of its own, which the undo removes.
    ResponseIncident.objects.bulk_create(
        [ResponseIncident(response_id=response_id, incident=survivor) for response_id in moved["responses"]]
    )
    return moved


def _propose(plan: MergePlan, user) -> IncidentRevision | None:
    """The recomputed dates and counts as a pending revision of the survivor (none if they are its own)."""
    if not plan.proposal:
        return None
    data = {name: proposed for name, (_, proposed) in plan.proposal.items()}
    candidate = Incident(**({name: getattr(plan.survivor, name) for name in PROPOSED_FIELDS} | data))
    validate_ranges(candidate)
    return IncidentRevision.objects.create(
        incident=plan.survivor,
        base_version=version_seen_by(plan.survivor, None, versions_told(every_change=plan.merged.confidential)),
        changes={"data": services._to_json(data)},
        proposed_by_id=services._acting_user_id(user),
        # Made of the two incidents' own fields: those of a confidential merged incident stay with
        # readers of confidential records, should the survivor be made public later.
        needs_confidential_access=plan.merged.confidential,
    )


def _propose_back(accepted: IncidentRevision, survivor: Incident, user) -> IncidentRevision | None:
    """After the undo of a merge whose proposed dates and counts were accepted: the survivor's own
    values from before, for the dates and for the count, each where none of its fields changed
    since the revision set them, as a pending revision of the survivor (none if both changed
    since). A group is proposed back whole: "exact" back beside a maximum an analyst gave since
    would be a figure no one may accept. Never changed by the undo
    itself, as the merge never changed them: a Reviewer decides. The values before are those of
    the survivor's state when it was accepted: the last of its history's events before the one
    its acceptance wrote. (Not the event of `version=accepted.base_version`: a merge of incidents
    not confidential bases its revision on the version told to readers without Confidential access,
    which the history does not keep, and the survivor's own version of that number was an older
    state, whose values a colleague had changed since.) One query."""
    events = Incident.pgh_event_model.objects.filter(pgh_obj_id=survivor.pk)
    accepting = events.filter(pgh_context__metadata__revision=accepted.pk).order_by("pgh_id").values("pgh_id")[:1]
    before = events.filter(pgh_id__lt=Subquery(accepting)).order_by("-pgh_id").first()
    if before is None:
        return None
    set_then = {
        name: Incident._meta.get_field(name).to_python(value)
        for name, value in accepted.changes.get("data", {}).items()
        if name in PROPOSED_FIELDS
    }
    data = {}
    for group in PROPOSED_GROUPS:
        if all(getattr(survivor, name) == set_then.get(name, getattr(before, name)) for name in group):
            data.update({name: getattr(before, name) for name in group if name in set_then})
    if not data:
        return None
    return IncidentRevision.objects.create(
        incident=survivor,
        base_version=version_seen_by(survivor, None, versions_told(every_change=before.confidential)),
        changes={"data": services._to_json(data)},
        proposed_by_id=services._acting_user_id(user),
        # The survivor's own earlier values: held while it was confidential (made public since the
        # merge), they stay with readers of confidential records, as its history's states then do.
        needs_confidential_access=before.confidential,
    )


def merge_visible(*, user, merge: IncidentMerge) -> IncidentMerge:
    """`merge` if `user` may see it (staff who may see both incidents), else RecordNotFound."""
    if not IncidentMerge.objects.visible_to(user).filter(pk=merge.pk).exists():
        raise services.RecordNotFound(f"No merge {merge.pk}.")
    return merge


def active_merge_of(*, user, public_id: str) -> IncidentMerge:
    """The merge that made `public_id` a merged incident, if `user` may see it; else RecordNotFound."""
    merge = (
        IncidentMerge.objects.visible_to(user)
        .filter(merged__public_id=public_id, undone_at__isnull=True)
        .select_related("survivor", "merged")
        .first()
    )
    if merge is None:
        raise services.RecordNotFound(f"No merged incident {public_id}.")
    return merge


def incident_merge_undo(*, user, merge: IncidentMerge, note: str = "") -> IncidentMerge:
    """Undo `merge`, by a Reviewer who may see both incidents: every row it moved that is still on
    the survivor goes back (rows deleted since stay deleted, their deletion in the history), the
    survivor's new response links are removed, the claims it marked lose the mark, `merged_into`
    is cleared, the pair's decision is the one it had before (`_decision_before`) and the merge's
    pending revision is rejected; if it was accepted, the survivor's dates and counts from before
    are proposed back (`_propose_back`, the returned merge's `revision_back`). MergeRefused if it
    was undone already, the survivor has been merged since or another incident merged into it
    since (undo those first; to a Reviewer without Confidential access whose survivor was
    confidential since, only that a Reviewer with it must undo this one: `_refuse_before_later_merges`),
    or an involvement would go back onto an incident that holds it already."""
    merge_visible(user=user, merge=merge)
    _require_reviewer(user, "undo merges")
    services.raise_text_errors(note=note)
    user_id = services._acting_user_id(user)
    with transaction.atomic(), pghistory.context(user=user_id, merge=merge.pk):
        merge = IncidentMerge.objects.select_for_update(of=("self",)).get(pk=merge.pk)
        # With the followers the merge moved (`_followers_moved`), in id order, as a merge locks them.
        followers = merge.moved.get("followers", [])
        locked = Incident.objects.select_for_update(of=("self",)).filter(
            pk__in=[merge.survivor_id, merge.merged_id, *followers]
        )
        locked = {incident.pk: incident for incident in locked.order_by("pk")}
        survivor, merged = locked[merge.survivor_id], locked[merge.merged_id]
        if merge.undone_at is not None:
            raise MergeRefused(f"This merge of {merged.public_id} was undone already.")
        _refuse_before_later_merges(user, merge, survivor)
        _lock_what_moving_links_refer_to(survivor)
        moved = merge.moved
        on_survivor = {"incident": survivor}
        _refuse_involvements_held_twice(moved, survivor, merged)
        # Before its rows move back, as the merge saves it (`incident_merge`).
        _save_changed(survivor, user_id)
        _move_claims_back(moved, survivor, merged)
        IncidentPlace.objects.filter(pk__in=moved["places"], **on_survivor).update(incident=merged)
        VictimGroup.objects.filter(pk__in=moved["victim_groups"], **on_survivor).update(incident=merged)
        Involvement.objects.filter(pk__in=moved["involvements"], **on_survivor).update(incident=merged)
        ResponseIncident.objects.filter(response__in=moved["responses"], **on_survivor).delete()
        merged.merged_into = None
        _save_changed(merged, user_id, "merged_into")
        # Each still follows the survivor: its own merge, into `merged`, cannot be undone first.
        for follower in (locked[pk] for pk in followers if pk in locked):
            if follower.merged_into_id == survivor.pk:
                follower.merged_into = merged
                _save_changed(follower, user_id, "merged_into")
        _responses_about_merged_changed(merged, survivor, moved["responses"])
        if merge.pair_id is not None:
            DuplicatePair.objects.filter(pk=merge.pair_id).update(**_decision_before(merge))
        merge.undone_at = timezone.now()
        if merge.revision_id is not None and merge.revision.state == RevisionState.PENDING:
            rejected = services.incident_revision_reject(
                revision=merge.revision, user=user, note="The merge that proposed it was undone."
            )
            # Timed as the undo: the rejection is the undo's decision, whose who and when an undo
            # in confidence withholds (`IncidentRevisionQuerySet.visible_to`'s `decision_withheld`).
            merge.undone_at = rejected.decided_at
        merge.revision_back = None
        _versions_read_again(survivor)
        if merge.revision_id is not None and merge.revision.state == RevisionState.ACCEPTED:
            merge.revision_back = _propose_back(merge.revision, survivor, user)
        duplicates.rescore_after_commit([survivor.pk, merged.pk])
        merge.undone_by_id = user_id
        # Both incidents' claims are back where they were before the merge: judged on them, note or none.
        merge.note_confidential = merge.note_confidential or duplicates.decided_in_confidence(
            user=user, incident_ids=[survivor.pk, merged.pk]
        )
        if merge.note_confidential:
            _writer_withheld([survivor.pk, merged.pk, *followers])
        if note:
            merge.note = f"{merge.note}\nUndone: {note}".strip()
        merge.save(update_fields=["undone_by", "undone_at", "note", "note_confidential", "revision_back"])
    return merge


def _refuse_before_later_merges(user, merge: IncidentMerge, survivor: Incident) -> None:
    """MergeRefused if the survivor has been merged since `merge`, or another incident was merged
    into it after `merge` and is still merged: that merge left on its incident the places and
    involvements the survivor held then, some of them through `merge`, and marked its claims
    against `merge`'s. Undoing `merge` first would take those from the survivor while the later
    incident, out of every read, kept them: lost to every view. Merges are undone in the reverse
    order.

    A merge `user` may not see is never told of, nor asked of them (`_refuse_after_hidden_states`):
    a later incident hidden from a Reviewer was merged while the survivor was confidential (merges
    need alike confidentiality), "another incident was merged into it" told them that a confidential
    record of that event exists, and asked them to undo a merge they could not. At most three
    queries."""
    if survivor.merged_into_id is not None:
        if not Incident.objects.seen_by(user).filter(pk=survivor.merged_into_id).exists():
            # Made confidential since: to this Reviewer the survivor left as a deleted one does.
            _refuse_after_hidden_states(survivor)
        raise MergeRefused(f"{survivor.public_id} has since been merged into another incident; undo that merge first.")
    later = (
        IncidentMerge.objects.filter(survivor=survivor, undone_at__isnull=True, pk__gt=merge.pk)
        .order_by("-pk")
        .values_list("merged_id", flat=True)
        .first()
    )
    # Named to a Reviewer who may see it, who may undo it.
    named = None if later is None else Incident.objects.seen_by(user).filter(pk=later).values("public_id").first()
    if named is not None:
        raise MergeRefused(
            f"{named['public_id']} was merged into {survivor.public_id} since; undo that merge first, "
            "as what it left behind was said through this one."
        )
    if _held_hidden_states_since(user, merge, survivor):
        _refuse_after_hidden_states(survivor)
    if later is not None:
        raise MergeRefused(
            f"Another incident was merged into {survivor.public_id} since; undo that merge first, "
            "as what it left behind was said through this one."
        )


def _held_hidden_states_since(user, merge: IncidentMerge, survivor: Incident) -> bool:
    """Whether the survivor was, at `merge` or since, in a state `user` may not see: confidential,
    to a Reviewer without Confidential access. The only states in which an incident hidden from
    them can have been merged into it, so refusing on these alone, whether or not one was, tells
    them only what its history already shows them (the versions it held then, left out), never
    whether anything was merged. From the version the merge gave it (its event in the merge's
    history context; every version, should none be found). One query."""
    if can_see_confidential(user):
        return False
    events = Incident.pgh_event_model.objects.filter(pgh_obj_id=survivor.pk)
    merged_at = events.filter(pgh_context__metadata__merge=merge.pk).order_by("version").values("version")[:1]
    return events.filter(confidential=True, version__gte=Coalesce(Subquery(merged_at), 0)).exists()


def _refuse_after_hidden_states(survivor: Incident) -> None:
    """The refusal of an undo by a Reviewer who may not see what the survivor held since: what,
    and whether it must be undone first, is for a Reviewer who may."""
    raise MergeRefused(
        f"{survivor.public_id} has changed since this merge in what only staff with Confidential access may see: "
        "a Reviewer with Confidential access must undo this merge."
    )


def _refuse_involvements_held_twice(moved: dict[str, list[int]], survivor: Incident, merged: Incident) -> None:
    """MergeRefused if an involvement the undo would put back is one the merged incident holds
    already: a moved row changed on the survivor since (its organization or role) into one the
    merged incident kept, having said it too. Moving it back would break the one-role-per-
    organization rule; dropping either would lose what someone wrote. Organizations are no secret
    from a reader of both incidents, so the refusal names them. (A place link never changes its
    place: a write replaces the links.) One query."""
    held = Involvement.objects.filter(incident=merged, organization=OuterRef("organization"), role=OuterRef("role"))
    twice = (
        Involvement.objects.filter(pk__in=moved["involvements"], incident=survivor)
        .filter(Exists(held))
        .select_related("organization")
        .order_by("id")
    )
    named = [f"{involvement.organization} as {involvement.get_role_display().lower()}" for involvement in twice]
    if named:
        raise MergeRefused(
            f"Undoing would give {merged.public_id} {', '.join(named)} twice: what the merge moved to "
            f"{survivor.public_id} was changed into what {merged.public_id} still holds. Change or remove it on "
            f"{survivor.public_id} first."
        )


def _move_claims_back(moved: dict[str, list[int]], survivor: Incident, merged: Incident) -> None:
    """Put the moved claims still on the survivor back on the merged incident, clearing the marks
    the merge set. Two of one source (and confidentiality) that would stand unmarked there, because
    a writer changed a moved claim's source since, are both kept and the later one marked
    `merge_conflict`, as a merge keeps them: refusing would tell of a claim the Reviewer may not
    see, dropping one would lose it. Two queries and two updates."""
    set_by_merge = set(moved["conflicts"])
    unmarked = set(Claim.objects.filter(incident=merged, merge_conflict=False).values_list("source_id", "confidential"))
    marked = []
    returning = Claim.objects.filter(pk__in=moved["claims"], incident=survivor).order_by("id")
    for pk, source_id, confidential, mark in returning.values_list("pk", "source_id", "confidential", "merge_conflict"):
        # Marked before the merge (by an earlier merge into it), or a second of its source there.
        if (mark and pk not in set_by_merge) or (source_id, confidential) in unmarked:
            marked.append(pk)
        else:
            unmarked.add((source_id, confidential))
    # The marked first, so that the unique indexes never see two unmarked claims of a source.
    returning.filter(pk__in=marked).update(incident=merged, merge_conflict=True)
    returning.exclude(pk__in=marked).update(incident=merged, merge_conflict=False)


# A merged incident's redirect to its survivor is permanent (301) while the merge stands, but a
# Reviewer can undo it, and a bare 301 is kept by browsers and caches with no end: every reader
# who once followed it would be sent to the survivor for good. They may keep it, asking first.
MERGED_REDIRECT_HEADERS = {"Cache-Control": "no-cache"}


def redirect_target(*, user, public_id: str) -> str | None:
    """The public id of the incident that `public_id` was merged into, if `user` may follow it
    (`IncidentQuerySet.merged_visible_to`); None otherwise, so the door answers as for an unknown id."""
    return (
        Incident.objects.merged_visible_to(user)
        .filter(public_id=public_id)
        .values_list("merged_into__public_id", flat=True)
        .first()
    )
