"""Rescoring in the background, with the queue the settings configure (django-tasks-db, in the
database) and its worker (`manage.py db_worker`): a write answers without rescoring and queues a
task once it commits; the worker proposes the pairs; what waits or failed shows in the admin's
review queue. The other tests run tasks where they are queued (tests/conftest.py)."""

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import transaction
from django.db.models import Q
from django.tasks import TaskResultStatus
from django.urls import reverse
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from incidents import duplicates, roles, services
from incidents.models import DuplicatePair, Incident
from tests.api_support import API, client_for, incident_url
from tests.factories import make_claim, make_incident, make_place, make_source, make_user
from tests.test_duplicates import A_REPORT_OF_THE_ORIGINAL_AND_ANOTHER_EVENT, Rollback, relaying_an_informant
from tracker.settings import TASKS

# Real commits: the worker runs as deployed, after the write's transaction committed, in
# transactions of its own (it also closes a connection it finds inside a transaction).
pytestmark = pytest.mark.django_db(transaction=True)

TWIN = {
    "title": "80 North Korean defectors caught near Sambong-ri sent back from Tumen",
    "description": "Held at Onsong holding centre.",
}


@pytest.fixture(autouse=True)
def _the_database_queue(settings):
    settings.TASKS = TASKS


ORIGINAL = {
    "title": "China forcibly repatriates 80 North Korean defectors from Tumen",
    "description": "They were caught crossing the river near Sambong-ri and held at Onsong holding centre.",
}


def make_tumen():
    china = make_place(name="China", kind="country", country="CN")
    return make_place(name="Tumen", kind="city", parent=make_place(name="Jilin", kind="province", parent=china))


@pytest.fixture
def tumen():
    return make_tumen()


@pytest.fixture
def original(tumen):
    return make_incident(**ORIGINAL, places=[tumen])


def run_worker() -> None:
    """The worker as deployed, until the queue is empty."""
    call_command("db_worker", "--batch", "--no-startup-delay", "--no-reload", stdout=io.StringIO())


def waiting_pairs() -> set[tuple[int, int]]:
    return set(DuplicatePair.objects.filter(decision="pending").values_list("incident_a", "incident_b"))


def queued() -> list[dict]:
    """The rescoring tasks' arguments, in the order they were queued."""
    tasks = DBTaskResult.objects.filter(task_path=duplicates.refresh_duplicate_pairs.module_path)
    return [task.args_kwargs["kwargs"] for task in tasks.order_by("enqueued_at")]


def review_queue_messages(client) -> list[str]:
    client.force_login(make_user(roles.REVIEWER))
    response = client.get(reverse("admin:incidents_duplicatepair_changelist"))
    assert response.status_code == 200
    return [str(message) for message in response.context["messages"]]


def test_an_api_write_answers_before_rescoring_and_the_worker_proposes_the_pair(client, original, tumen):
    # Reported a month later at first: no candidate of the original.
    twin = make_incident(**TWIN, places=[tumen], date_start="2023-09-29", date_end="2023-09-29")
    answer = client_for(make_user(roles.REVIEWER)).patch(
        incident_url(twin),
        {"date_start": "2023-08-29", "date_end": "2023-08-29"},
        format="json",
        HTTP_IF_MATCH='"1"',
    )
    assert answer.status_code == 200, answer.json()
    # Answered with the write done and the rescoring queued, not done.
    assert waiting_pairs() == set()
    assert queued() == [{"incident_ids": [twin.pk]}]
    [waiting] = review_queue_messages(client)
    assert waiting.startswith("Waiting to be rechecked for duplicates: 1 changed incident, the oldest queued")
    assert "db_worker" not in waiting  # queued just now: not late

    run_worker()
    assert waiting_pairs() == {(original.pk, twin.pk)}
    task = DBTaskResult.objects.get()
    assert (task.status, task.return_value) == (TaskResultStatus.SUCCESSFUL, 1)
    assert review_queue_messages(client) == []


def test_a_write_that_rolls_back_queues_nothing(original, tumen):
    def create():
        return services.incident_create(
            user=make_user(roles.ANALYST),
            data={
                **TWIN,
                "incident_type": original.incident_type,
                "date_start": original.date_start,
                "date_end": original.date_end,
            },
            places=[tumen],
        )

    with pytest.raises(Rollback), transaction.atomic():
        create()
        raise Rollback
    assert not Incident.objects.filter(title=TWIN["title"]).exists()
    assert not DBTaskResult.objects.exists()
    # The same write, committed, queues its rescoring.
    incident = create()
    assert queued() == [{"incident_ids": [incident.pk]}]


@pytest.mark.parametrize(
    ("batch", "whole_database_above", "tasks"),
    [
        (1000, 5000, [{"incident_ids": "both"}]),
        # A larger import, in tasks of a batch each: no task's arguments hold every id.
        (1, 5000, [{"incident_ids": "first"}, {"incident_ids": "second"}]),
        # Larger still: one pass over the whole database, its arguments naming no incident.
        (1000, 1, [{}]),
    ],
    ids=["one task", "a task per batch", "the whole database"],
)
def test_an_import_queues_its_incidents(
    client, original, tmp_path, monkeypatch, django_assert_num_queries, batch, whole_database_above, tasks
):
    monkeypatch.setattr(duplicates, "RESCORING_BATCH", batch)
    monkeypatch.setattr(duplicates, "RESCORING_WHOLE_DATABASE_ABOVE", whole_database_above)
    path = tmp_path / "new.csv"
    path.write_text(A_REPORT_OF_THE_ORIGINAL_AND_ANOTHER_EVENT)
    analyst = make_user(roles.ANALYST)
    call_command(
        "import_incidents", str(path), f"--user={analyst.username}", "--allow-duplicates", stdout=io.StringIO()
    )
    twin = Incident.objects.get(title__startswith="80 North Korean defectors caught")
    other = Incident.objects.get(title="Arrest of a missionary")
    ids = {"both": [twin.pk, other.pk], "first": [twin.pk], "second": [other.pk]}
    assert queued() == [{name: ids[which] for name, which in arguments.items()} for arguments in tasks]
    assert waiting_pairs() == set()
    # However many tasks wait, the review queue counts them in one query (its reader's
    # permissions, which it counts by, read once per request).
    analyst.get_all_permissions()
    with django_assert_num_queries(1):
        backlog = duplicates.rescoring_backlog(analyst)
    assert (backlog.incidents, backlog.whole_database) == ((0, True) if tasks == [{}] else (2, False))
    [waiting] = review_queue_messages(client)
    assert waiting.startswith(
        "Waiting to be rechecked for duplicates: every incident (after a large import),"
        if tasks == [{}]
        else "Waiting to be rechecked for duplicates: 2 changed incidents,"
    )

    run_worker()
    assert waiting_pairs() == {(original.pk, twin.pk)}
    assert not DBTaskResult.objects.exclude(status=TaskResultStatus.SUCCESSFUL).exists()


def test_a_failed_rescoring_keeps_the_write_and_shows_in_the_review_queue(client, original, tumen, monkeypatch):
    twin = make_incident(**TWIN, places=[tumen])
    reviewer = make_user(roles.REVIEWER)
    services.incident_update(incident=twin, user=reviewer, expected_version=twin.version, data={"people_count": 81})

    def broken(*args, **kwargs):
        raise RuntimeError("the scoring broke")

    monkeypatch.setattr(duplicates, "scored_pairs", broken)
    run_worker()
    twin.refresh_from_db()
    assert twin.people_count == 81
    task = DBTaskResult.objects.get()
    assert task.status == TaskResultStatus.FAILED
    assert "the scoring broke" in task.traceback
    [failed] = review_queue_messages(client)
    assert failed.startswith("1 recheck for duplicates failed in the last day")


def test_a_queue_no_worker_takes_is_flagged_as_late(client, original, tumen):
    twin = make_incident(**TWIN, places=[tumen])
    services.incident_update(
        incident=twin, user=make_user(roles.REVIEWER), expected_version=twin.version, data={"people_count": 81}
    )
    DBTaskResult.objects.update(enqueued_at=timezone.now() - timedelta(minutes=5))
    [late] = review_queue_messages(client)
    assert late.startswith(
        # Django's timesince joins number and unit with a no-break space.
        "Waiting to be rechecked for duplicates: 1 changed incident, the oldest queued 5\xa0minutes ago."
    )
    assert late.endswith("No background worker has taken them: is `manage.py db_worker` running?")
    assert not DuplicatePair.objects.filter(Q(incident_a=twin) | Q(incident_b=twin)).exists()


def test_a_merge_and_its_undo_queue_the_rescoring_of_both_incidents_and_never_twice(original, tumen):
    # Neither was queued: the merged incident's waiting pairs stayed in the queue, and the
    # survivor, holding the other's places and words now, was not scored again.
    twin = make_incident(**TWIN, places=[tumen])
    pair = DuplicatePair.objects.create(incident_a=original, incident_b=twin, score=0.9)
    reviewer = client_for(make_user(roles.REVIEWER))
    both = {"incident_ids": [original.pk, twin.pk]}

    assert reviewer.post(f"{API}/duplicates/{pair.pk}/merge/", {}, format="json").status_code == 201
    assert queued() == [both]
    # Undone before a worker took the merge's rescoring: the same one waits already.
    assert reviewer.post(f"{API}/incidents/{twin.public_id}/unmerge/", {}, format="json").status_code == 200
    assert queued() == [both]

    run_worker()
    # Back in the queue, as the undo left it, and scored again.
    assert waiting_pairs() == {(original.pk, twin.pk)}
    assert reviewer.post(f"{API}/duplicates/{pair.pk}/merge/", {}, format="json").status_code == 201
    assert queued() == [both, both]


def test_a_write_while_a_rescoring_of_the_whole_database_waits_queues_nothing_more(original, tumen):
    duplicates.refresh_duplicate_pairs.enqueue()
    services.incident_update(
        incident=original, user=make_user(roles.REVIEWER), expected_version=original.version, data={"people_count": 81}
    )

    assert queued() == [{}]
    run_worker()
    services.incident_update(
        incident=original,
        user=make_user(roles.REVIEWER),
        expected_version=original.version,
        data={"people_count": 82},
    )
    assert queued() == [{}, {"incident_ids": [original.pk]}]


def test_the_review_queue_counts_only_the_waiting_incidents_its_reader_may_see(client, original, tumen):
    """Every incident written queues its rescoring, a confidential one too: staff without
    Confidential access read in the count, its age and the failures when an informant's account
    was recorded or changed, and how many incidents an import of confidential ones held."""
    informant = make_incident(**TWIN, places=[tumen], confidential=True, review_state="draft")
    confidential_reviewer = make_user(roles.REVIEWER, confidential=True)
    services.incident_update(
        incident=informant, user=confidential_reviewer, expected_version=informant.version, data={"people_count": 81}
    )
    DBTaskResult.objects.update(enqueued_at=timezone.now() - timedelta(minutes=5))
    client.force_login(make_user(roles.REVIEWER))
    url = reverse("admin:incidents_duplicatepair_changelist")

    assert [str(message) for message in client.get(url).context["messages"]] == []
    # Once an incident they see waits too, they are told of that one alone, since it was queued
    # (for a change they see: `test_a_confidential_claims_write_on_a_public_incident_is_rescored_in_confidence`).
    services.incident_update(
        incident=original, user=confidential_reviewer, expected_version=original.version, data={"people_count": 79}
    )
    [waiting] = [str(message) for message in client.get(url).context["messages"]]
    assert waiting.startswith("Waiting to be rechecked for duplicates: 1 changed incident, the oldest queued 0")
    # Readers with Confidential access are told of both, since the first was queued.
    client.force_login(confidential_reviewer)
    [waiting] = [str(message) for message in client.get(url).context["messages"]]
    assert waiting.startswith("Waiting to be rechecked for duplicates: 2 changed incidents, the oldest queued 5")
    # A failed rescoring of the confidential incident alone is theirs to know of too.
    DBTaskResult.objects.filter(enqueued_at__lt=timezone.now() - timedelta(minutes=1)).update(
        status=TaskResultStatus.FAILED, finished_at=timezone.now()
    )
    assert any("1 recheck for duplicates failed" in str(m) for m in client.get(url).context["messages"])
    client.force_login(make_user(roles.REVIEWER))
    assert not any("failed" in str(m) for m in client.get(url).context["messages"])


def test_what_a_source_cites_hidden_from_some_rescores_the_pairs_with_a_confidential_incident_alone(
    client, tumen, monkeypatch
):
    """A public outlet found to relay an informant reads as citing nothing, before and after, to
    staff without Confidential access, whose pairs are scored by the origins they know: a rescoring
    of their pairs, or its count among those waiting, would tell them that something hidden changed
    and how many incidents relay it. It queued none, so a pair with a confidential incident, which
    only staff with that access see, scored by every origin, stayed blind to the informant both
    incidents now reach."""
    monkeypatch.setattr(duplicates, "PRIOR_SHIFT_LIMIT", 0.0)  # the prior as fitted, not this database's
    informant = make_source(title="Informant K", confidential=True)
    outlet = make_source(title="Daily NK")
    relaying = make_incident(title="Arrest at the market", description="", places=[tumen])
    testimony = make_incident(title="Fishermen detained offshore", description="", places=[tumen], confidential=True)
    alike = make_incident(title="Traders held at the bridge", description="", places=[tumen])
    for incident, source in ((relaying, outlet), (testimony, informant), (alike, outlet)):
        make_claim(incident=incident, source=source)
    duplicates.duplicate_pairs_refresh(incident_ids=[relaying.pk, testimony.pk, alike.pk])
    assert (relaying.pk, testimony.pk) not in waiting_pairs()
    # A pair of two public incidents, as a rescoring would never leave it.
    DuplicatePair.objects.filter(incident_a=relaying, incident_b=alike).delete()
    seen = DuplicatePair.objects.create(incident_a=relaying, incident_b=alike, score=0.1234)
    keeper = make_user(roles.REVIEWER, confidential=True)

    answer = client_for(keeper).patch(
        f"{API}/sources/{outlet.pk}/", {"cites": informant.pk, "version": outlet.version}, format="json"
    )

    assert answer.status_code == 200, answer.content
    in_confidence = {"incident_ids": [relaying.pk, alike.pk], "confidential_pairs_only": True}
    assert queued() == [in_confidence]
    assert review_queue_messages(client) == []  # a Reviewer without Confidential access
    client.force_login(keeper)
    [waiting] = client.get(reverse("admin:incidents_duplicatepair_changelist")).context["messages"]
    assert str(waiting).startswith("Waiting to be rechecked for duplicates: 2 changed incidents")
    # A write every member of staff is told of is queued, though the rescoring in confidence covers it.
    alike.refresh_from_db()
    services.incident_update(incident=alike, user=keeper, expected_version=alike.version, data={"people_count": 3})
    assert queued() == [in_confidence, {"incident_ids": [alike.pk]}]
    DBTaskResult.objects.filter(args_kwargs__kwargs={"incident_ids": [alike.pk]}).delete()

    run_worker()
    assert (relaying.pk, testimony.pk) in waiting_pairs()
    seen.refresh_from_db()
    assert seen.score == 0.1234


@pytest.mark.parametrize("change", ["claim added", "claim edited"])
def test_a_confidential_claims_write_on_a_public_incident_is_rescored_in_confidence(client, tumen, change):
    """A confidential claim written on a public incident moves nothing staff without Confidential
    access are told of it (its version, its ETag), nor anything their pairs are scored by; its
    rescoring, counted for them, told them "1 changed incident, the oldest queued 0 minutes ago":
    when an informant's account was recorded or changed."""
    incident = make_incident(title="Arrest at the market", places=[tumen])
    informant = make_source(title="Informant K", confidential=True)
    if change == "claim edited":
        make_claim(incident=incident, source=informant, excerpt="As first told")
    keeper = make_user(roles.REVIEWER, confidential=True)
    told = client_for(make_user(roles.REVIEWER)).get(incident_url(incident))["ETag"]
    read = client_for(keeper).get(incident_url(incident)).json()
    claims = [{"id": claim["id"], "source": claim["source"], "excerpt": "As told again"} for claim in read["claims"]]
    if change == "claim added":
        claims.append({"source": informant.pk, "people_count": 80, "excerpt": "Seen at the market"})

    answer = client_for(keeper).patch(
        incident_url(incident), {"claims": claims, "version": read["version"]}, format="json"
    )

    assert answer.status_code == 200, answer.content
    assert client_for(make_user(roles.REVIEWER)).get(incident_url(incident))["ETag"] == told
    assert queued() == [{"incident_ids": [incident.pk], "confidential_pairs_only": True}]
    assert review_queue_messages(client) == []  # a Reviewer without Confidential access
    client.force_login(keeper)
    [waiting] = client.get(reverse("admin:incidents_duplicatepair_changelist")).context["messages"]
    assert str(waiting).startswith("Waiting to be rechecked for duplicates: 1 changed incident")
    # A claim they see is a rescoring they are told of.
    read = client_for(keeper).get(incident_url(incident)).json()
    claims = [*read["claims"], {"source": make_source(title="Daily NK").pk}]
    answer = client_for(keeper).patch(
        incident_url(incident), {"claims": claims, "version": read["version"]}, format="json"
    )
    assert answer.status_code == 200, answer.content
    assert queued()[1:] == [{"incident_ids": [incident.pk]}]


def edited_by(user, incidents: list[Incident], changes: dict) -> None:
    """Each of `incidents` changed by `user` through the API, as read now."""
    for incident in incidents:
        incident.refresh_from_db()
        answer = client_for(user).patch(incident_url(incident), {**changes, "version": incident.version}, format="json")
        assert answer.status_code == 200, answer.content


def find_duplicates_while_made_public(monkeypatch, insider, incidents, *, before_the_worker=lambda: None) -> None:
    """`find_duplicates`, during which, once it has scored every pair, `insider` makes `incidents`
    public and the worker runs the rescorings that queues (after `before_the_worker`)."""
    scored_pairs = duplicates.scored_pairs

    def made_public_while_the_pass_scores(*args, **kwargs):
        scored = scored_pairs(*args, **kwargs)
        if kwargs.get("incident_ids"):
            return scored  # the worker's rescoring
        edited_by(insider, incidents, {"confidential": False})
        before_the_worker()
        run_worker()
        return scored

    with monkeypatch.context() as patched:
        patched.setattr(duplicates, "scored_pairs", made_public_while_the_pass_scores)
        call_command("find_duplicates", stdout=io.StringIO())


def score_known_without_access(first, second) -> float:
    """The pair's score as staff without Confidential access know the two incidents now."""
    return next(
        score for a, b, score in duplicates.scored_pairs(incident_ids=[first.pk]) if (a, b) == (first.pk, second.pk)
    )


@pytest.mark.parametrize("decision", ["pending", "unsure"])
def test_a_whole_database_pass_leaves_the_pairs_of_incidents_changed_meanwhile_to_their_rescoring(
    monkeypatch, decision
):
    """`find_duplicates` reads every incident, then writes its scores (half an hour at a million).
    Two confidential incidents alike only by an informant both relay are made public meanwhile,
    and the worker rescores their pair as staff without Confidential access know them. The pass
    then wrote back the score it worked out while they were confidential (0.99+): staff without
    that access saw a pair of two public incidents that only the hidden informant explains."""
    first, second, pair = relaying_an_informant()
    insider = make_user(roles.REVIEWER, confidential=True)
    if decision != "pending":
        duplicates.duplicate_pair_decide(user=insider, pair=pair, decision=decision, note="")
    find_duplicates_while_made_public(monkeypatch, insider, [first, second])

    listed = client_for(make_user(roles.REVIEWER)).get(f"{API}/duplicates/", {"decision": decision}).json()["results"]
    as_they_may_know_it = score_known_without_access(first, second)
    assert as_they_may_know_it < 0.99
    assert [(row["incident_a"], row["score"]) for row in listed] == [(first.public_id, as_they_may_know_it)]


def test_a_confidential_claim_added_while_a_rescoring_scores_loses_no_proposal_of_two_public_incidents(monkeypatch):
    """The worker rescores a new public incident (its twin, public too, already recorded). While it
    scores, an analyst with Confidential access adds a confidential claim to the original: a write
    rescored `confidential_pairs_only` (only pairs with a confidential incident). Taken for one that
    rescores every pair of the original, it made the first rescoring leave the pair (original,
    twin) to it, which never writes a pair of two public incidents: the duplicate was never proposed."""
    tumen = make_tumen()
    original = make_incident(**ORIGINAL, places=[tumen])
    twin = make_incident(**TWIN, places=[tumen])
    # As a baseline, the twin's rescoring proposes the pair.
    assert (original.pk, twin.pk) in {
        (a, b) for a, b, _ in duplicates.scored_pairs(incident_ids=[twin.pk], at_least=duplicates.PROPOSAL_THRESHOLD)
    }
    DuplicatePair.objects.all().delete()
    keeper = make_user(roles.REVIEWER, confidential=True)
    informant = make_source(title="Informant K", confidential=True)
    scored_pairs = duplicates.scored_pairs
    done = []

    def confidential_claim_added_meanwhile(*args, **kwargs):
        scored = scored_pairs(*args, **kwargs)
        if not done:
            done.append(True)
            read = client_for(keeper).get(incident_url(original)).json()
            claims = [*read["claims"], {"source": informant.pk, "excerpt": "Seen at the river"}]
            answer = client_for(keeper).patch(
                incident_url(original), {"claims": claims, "version": read["version"]}, format="json"
            )
            assert answer.status_code == 200, answer.content
            assert queued()[-1] == {"incident_ids": [original.pk], "confidential_pairs_only": True}
        return scored

    monkeypatch.setattr(duplicates, "scored_pairs", confidential_claim_added_meanwhile)
    # The twin's rescoring, as the worker runs it.
    duplicates.refresh_duplicate_pairs.call(incident_ids=[twin.pk])
    monkeypatch.setattr(duplicates, "scored_pairs", scored_pairs)
    run_worker()  # the confidential-only rescoring the claim queued
    assert done
    assert (original.pk, twin.pk) in waiting_pairs()


def test_a_whole_database_pass_does_not_write_back_scores_of_incidents_rescored_by_a_task_queued_before_it(monkeypatch):
    """As tests/test_duplicates_background.py's last test, but the two confidential incidents had
    each been edited shortly before `find_duplicates` started, and those rescorings still waited
    for the worker. Their publication, during the pass, queues nothing (`_waiting_already`: the
    waiting task covers them); the worker then runs the waiting tasks, which read them public and
    bring the score down. Counting only the rescorings queued since it began, the pass wrote back
    the score it worked out while they were confidential (0.99+)."""

    first, second, _ = relaying_an_informant()
    insider = make_user(roles.REVIEWER, confidential=True)
    # Edited before the pass starts: their rescorings wait for the worker.
    edited_by(insider, [first, second], {"people_count": 7})
    waiting_tasks = queued()
    assert waiting_tasks == [{"incident_ids": [first.pk]}, {"incident_ids": [second.pk]}]

    def nothing_queued_since_the_pass_began():
        assert queued() == waiting_tasks  # covered by the waiting ones

    find_duplicates_while_made_public(
        monkeypatch, insider, [first, second], before_the_worker=nothing_queued_since_the_pass_began
    )

    # Below the threshold as staff without Confidential access know them: withdrawn by the worker.
    assert score_known_without_access(first, second) < duplicates.PROPOSAL_THRESHOLD
    listed = client_for(make_user(roles.REVIEWER)).get(f"{API}/duplicates/", {"decision": "pending"}).json()["results"]
    assert listed == []


def test_find_duplicates_says_what_it_left_to_rescorings_no_worker_has_taken(original):
    """A pass leaves to the rescorings still waiting the pairs of the incidents they name: with no
    worker running, those pairs wait with them, which the command says, naming the worker to run."""
    twin = make_incident(**TWIN, places=list(original.places.all()))
    edited_by(make_user(roles.REVIEWER), [twin], {"description": "Held at Onsong holding centre, then sent back."})
    assert queued() == [{"incident_ids": [twin.pk]}]
    output = io.StringIO()

    call_command("find_duplicates", stdout=output)

    assert output.getvalue().splitlines() == [
        "0 pairs wait for review.",
        "1 rescoring waits for a worker: the pairs of the incidents they name were left to them. "
        "Run `python manage.py db_worker`.",
    ]
    run_worker()
    assert waiting_pairs() == {(original.pk, twin.pk)}
    output = io.StringIO()
    call_command("find_duplicates", stdout=output)
    assert output.getvalue() == "1 pair waits for review.\n"
