"""Small factories for tests: each builds one valid object, with overrides for what a test cares about."""

import itertools
import random
import string
from datetime import date

from django.contrib.auth.models import Group, User

from incidents import roles
from incidents.models import Claim, Incident, IncidentType, Organization, Place, Source

_sequence = itertools.count(1)


def make_user(role: str | None = None, *, confidential: bool = False, **overrides) -> User:
    """A user in `role` (roles.VIEWER, ANALYST, REVIEWER; None for a non-staff account)."""
    number = next(_sequence)
    fields = {"username": f"user{number}", "is_staff": role is not None, **overrides}
    user = User.objects.create_user(password="correct horse battery staple", **fields)
    if role:
        user.groups.add(Group.objects.get(name=role))
    if confidential:
        user.groups.add(Group.objects.get(name=roles.CONFIDENTIAL_ACCESS))
    return user


def incident_type(slug: str = "forced-repatriation") -> IncidentType:
    return IncidentType.objects.get(slug=slug)


def make_place(**overrides) -> Place:
    fields = {"name": f"Place {next(_sequence)}", "kind": "city", "country": "CN", **overrides}
    return Place.objects.create(**fields)


def place_chain(levels: int, **top) -> list[Place]:
    """Places one inside another, `levels` deep from a country (the first, level 1) down, made as
    the ORM makes them, which checks no rule: as a database may hold them from before places
    nested at most TREE_LEVELS_MAX levels deep."""
    places = [make_place(kind="country", **top)]
    for level in range(2, levels + 1):
        places.append(Place.objects.create(name=f"Level {level}", kind="other", parent=places[-1]))
    return places


def two_tumens() -> tuple[Place, Place]:
    """Two cities of one name across the border: China > Jilin > Tumen, North Korea > North Hamgyong > Tumen."""
    china = make_place(name="China", kind="country", country="CN")
    north_korea = make_place(name="North Korea", kind="country", country="KP")
    jilin = make_place(name="Jilin", kind="province", parent=china)
    north_hamgyong = make_place(name="North Hamgyong", kind="province", parent=north_korea)
    return (
        make_place(name="Tumen", kind="city", parent=jilin),
        make_place(name="Tumen", kind="city", parent=north_hamgyong),
    )


def type_chain(levels: int, prefix: str = "level") -> list[IncidentType]:
    """Incident types one under another, `levels` deep from a top-level type (the first) down,
    made in bulk, which checks no rule: as a database may hold them from before types nested at
    most TREE_LEVELS_MAX levels deep. Three queries, whatever the depth."""
    types = IncidentType.objects.bulk_create(
        IncidentType(slug=f"{prefix}-{level}", name=f"{prefix.title()} {level}") for level in range(1, levels + 1)
    )
    for parent, incident_type in itertools.pairwise(types):
        incident_type.parent = parent
    IncidentType.objects.bulk_update(types[1:], ["parent"], batch_size=1000)
    return types


def make_organization(**overrides) -> Organization:
    fields = {"name": f"Organization {next(_sequence)}", "kind": "ngo", **overrides}
    return Organization.objects.create(**fields)


def make_source(**overrides) -> Source:
    fields = {"title": f"Source {next(_sequence)}", "kind": "news_article", **overrides}
    return Source.objects.create(**fields)


def make_incident(*, places=(), **overrides) -> Incident:
    best = overrides.get("people_count", 80)
    bounds = {overrides.get("people_count_min"), overrides.get("people_count_max")} - {None}
    fields = {
        "title": f"Incident {next(_sequence)}",
        "incident_type": overrides.pop("incident_type", None) or incident_type(),
        "date_start": date(2023, 8, 29),
        "date_end": date(2023, 8, 29),
        "date_precision": "day",
        "people_count": 80,
        # Exact where the figures are one (the database's rule), else about.
        "count_qualifier": "exact" if best is not None and bounds <= {best} else "about",
        "review_state": "published",
        **overrides,
    }
    incident = Incident.objects.create(**fields)
    if places:
        incident.places.set(places)
    return incident


def make_claim(*, incident: Incident, source: Source | None = None, **overrides) -> Claim:
    fields = {"people_count": incident.people_count, "source_connection": "third_party", **overrides}
    return Claim.objects.create(incident=incident, source=source or make_source(), **fields)


def pasted_report(characters: int, *, seed: int = 7) -> str:
    """A text of `characters` characters whose words are nearly all new, as a whole report pasted in
    is to the search's words (one tsvector an incident, bounded at 1 MB): 4 to 10 random letters."""
    rnd = random.Random(seed)
    words, length = [], 0
    while length < characters:
        word = "".join(rnd.choice(string.ascii_lowercase) for _ in range(rnd.randint(4, 10)))
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:characters]


def densest_words(characters: int, *, seed: int = 7) -> str:
    """A text of `characters` characters that makes the most search words a text can: every word
    new and of two 4-byte characters (CJK Extension B), 4 bytes of the 1 MB tsvector a character."""
    rnd = random.Random(seed)
    words = " ".join("".join(chr(rnd.randint(0x20000, 0x2A6DF)) for _ in range(2)) for _ in range(characters // 3 + 1))
    return words[:characters]
