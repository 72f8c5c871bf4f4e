"""Titles and descriptions for the demo incidents, worded as different outlets word real reports.

Each demo incident reports an *event* whose facts (who the victims were, what happened to them, who
acted, a named person, a facility, how many children) follow from the generator's seed and the
incident's number in the run alone (`event_facts`), so the duplicates phase (`demo_duplicates.py`) can report the
same event again, long after the original was written, without keeping anything in memory.

A report (`report_text`) words those facts with one of many templates per kind of incident, a
count said exactly, roughly ("about 50", "dozens of") or not at all, the place as the city, its
province or a transliteration ("Sinuiju", "Sinŭiju", "Shinuiju"), names in several romanisations
("Kim Chol-su", "Kim Cheol-soo"), and sometimes the date. Most reports name the village, district
or crossing, and the incident is then placed there (a place under the city, made on first need),
as an analyst records it. Different events in one town and month thus read alike, as real ones do,
yet rarely share all of their particulars.

Facts and the original's wording come from a 64-bit hash (splitmix64) of (seed, number) rather than a
random generator seeded per incident: reseeding costs ~10 µs, a hash ~1 µs, at a million incidents.
"""

import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

from incidents.models import Place

_MASK = (1 << 64) - 1


def _splitmix64(value: int) -> int:
    value = (value + 0x9E3779B97F4A7C15) & _MASK
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)


class _Draws:
    """Choices drawn from a 64-bit hash, digit by digit (mixed again when it runs out)."""

    def __init__(self, key: int):
        self.state = _splitmix64(key)
        self.left = self.state

    def below(self, bound: int) -> int:
        if self.left < bound * 16:
            self.state = _splitmix64(self.state)
            self.left = self.state
        self.left, value = divmod(self.left, bound)
        return value

    def choice(self, values):
        return values[self.below(len(values))]

    def chance(self, percent: int) -> bool:
        return self.below(100) < percent


class RandomDraws:
    """The same choices drawn from a random generator: a duplicate's wording."""

    def __init__(self, generator: random.Random):
        self.generator = generator

    def below(self, bound: int) -> int:
        return self.generator.randrange(bound)

    def choice(self, values):
        return self.generator.choice(values)

    def chance(self, percent: int) -> bool:
        return self.generator.random() * 100 < percent


# Kinds of incident, by type slug: which wording family reports them.
FAMILY = {
    "forced-repatriation": "return",
    "deportation": "return",
    "arbitrary-detention": "detention",
    "enforced-disappearance": "disappearance",
    "torture": "abuse",
    "sexual-violence": "abuse",
    "forced-labour": "labour",
    "trafficking": "labour",
    "execution": "killing",
    "extrajudicial-execution": "killing",
}

COUNTRY_ACTORS = {
    "CN": ["China", "Chinese police", "Chinese authorities", "Chinese border police", "Beijing"],
    "KP": ["North Korea", "North Korean authorities", "the Ministry of State Security", "Pyongyang"],
    "RU": ["Russia", "Russian police", "Russian immigration officers", "Moscow"],
    "LA": ["Laos", "Lao police", "Lao authorities", "Vientiane"],
    "VN": ["Vietnam", "Vietnamese police", "Vietnamese border guards", "Hanoi"],
    "TH": ["Thailand", "Thai police", "Thai immigration officers", "Bangkok"],
    "MN": ["Mongolia", "Mongolian border guards", "Mongolian authorities", "Ulaanbaatar"],
    "MM": ["Myanmar", "Myanmar police", "Myanmar soldiers", "Naypyidaw"],
}

# Romanisations and other spellings a place's name appears under in reports.
PLACE_SPELLINGS = {
    "Dandong": ["Dandong", "Tan-tung", "Andong"],
    "Shenyang": ["Shenyang", "Shen-yang", "Mukden"],
    "Yanji": ["Yanji", "Yenki", "Yŏn'gil"],
    "Tumen": ["Tumen", "Tumen City", "Tomun"],
    "Changbai": ["Changbai", "Chang-pai", "Jangbaek"],
    "Sinuiju": ["Sinuiju", "Sinŭiju", "Shinuiju"],
    "Hyesan": ["Hyesan", "Hyesan-si", "Hyesan City"],
    "Vladivostok": ["Vladivostok", "Wladiwostok"],
    "Khasan": ["Khasan", "Hasan"],
    "Boten": ["Boten", "Bo Ten"],
    "Lao Cai": ["Lao Cai", "Lào Cai"],
    "Mae Sai": ["Mae Sai", "Maesai"],
    "Zamyn-Uud": ["Zamyn-Uud", "Zamiin-Uud"],
    "Muse": ["Muse", "Mu Se"],
    "Hoeryong": ["Hoeryong", "Hoeryŏng", "Hweryong"],
    "Chongjin": ["Chongjin", "Ch'ŏngjin", "Cheongjin"],
    "Onsong": ["Onsong", "Onsŏng"],
    "Manpo": ["Manpo", "Manp'o"],
    "Hunchun": ["Hunchun", "Huichun"],
    "Longjing": ["Longjing", "Lung-ching", "Yongjeong"],
    "Ji'an": ["Ji'an", "Jian", "Chi-an"],
    "Samjiyon": ["Samjiyon", "Samjiyŏn"],
    "Jilin": ["Jilin", "Kirin", "Jilin province"],
    "Liaoning": ["Liaoning", "Liaoning province"],
    "North Pyongan": ["North Pyongan", "North P'yŏngan"],
    "Ryanggang": ["Ryanggang", "Yanggang"],
}

# Korean names in the romanisations different outlets use ("Kim Chol-su" is "Kim Cheol-soo").
SURNAMES = [
    ["Kim", "Gim"], ["Lee", "Ri", "Yi", "Rhee"], ["Park", "Pak"], ["Choi", "Choe"], ["Jung", "Jong", "Chong"],
    ["Kang", "Gang"], ["Cho", "Jo"], ["Yoon", "Yun"], ["Jang", "Chang"], ["Han"], ["Oh", "O"], ["Seo", "So"],
    ["Shin", "Sin"], ["Kwon", "Gwon"], ["Hwang"], ["Ahn", "An"], ["Song"], ["Ryu", "Yu"], ["Hong"], ["Jeon", "Jon"],
]  # fmt: skip
GIVEN_NAMES = [
    ["Chol-su", "Cheol-soo", "Chul-su"], ["Young-hee", "Yong-hui", "Yeong-hui"], ["Myong-hui", "Myung-hee"],
    ["Song-il", "Seong-il"], ["Kwang-ho", "Gwang-ho"], ["Un-hye", "Eun-hye"], ["Jin-ok", "Chin-ok"],
    ["Sun-ja", "Soon-ja"], ["Hyok", "Hyuk"], ["Mi-ran", "Mi-ryang"], ["Dong-hyok", "Tong-hyok"], ["Ok-sun"],
    ["Kum-ok", "Geum-ok"], ["Yong-nam", "Young-nam"], ["Chun-hwa", "Choon-hwa"], ["Su-jin", "Soo-jin"],
    ["Jong-un", "Jeong-eun"], ["Hye-sook", "Hye-suk"], ["Il-nam"], ["Bok-hui", "Bok-hee"],
]  # fmt: skip

# (plural noun phrases that name the same people, from one outlet to another)
GROUPS = [
    ["North Korean defectors", "defectors from the North", "North Korean escapees"],
    ["North Korean women", "women from North Korea", "female defectors"],
    ["refugees", "asylum seekers", "North Korean refugees"],
    ["Christians", "church members", "members of an underground church"],
    ["workers", "labourers", "North Korean workers"],
    ["relatives of a defector", "family members of a defector", "a defector's relatives"],
    ["students", "university students", "young people"],
    ["traders", "market traders", "smugglers"],
    ["fishermen", "crew members of a fishing boat"],
    ["teenagers", "minors", "children and teenagers"],
    ["former soldiers", "army deserters", "ex-soldiers"],
    ["people", "people", "people"],
]  # fmt: skip

# What happened before, in the words of two outlets each.
CIRCUMSTANCES = [
    ["caught crossing the river", "arrested after crossing the frozen river"],
    ["arrested in a raid on a safe house", "seized when police raided their hideout"],
    ["detained at a checkpoint", "stopped at a road checkpoint"],
    ["arrested at a church gathering", "detained during a prayer meeting"],
    ["taken off a bus", "pulled from a long-distance bus"],
    ["detained at the railway station", "arrested at the train station"],
    ["held after calling relatives in the South", "traced through a phone call to South Korea"],
    ["found hiding in a farmhouse", "discovered in a farmer's shed"],
    ["intercepted near the border", "stopped by a border patrol"],
    ["arrested during house searches", "picked up in door-to-door searches"],
    ["caught on the way to a third country", "arrested while travelling south"],
    ["reported by an informer", "denounced by a neighbour"],
    ["detained at their workplace", "taken from a factory dormitory"],
    ["arrested in a karaoke bar", "detained at a restaurant"],
]  # fmt: skip

FACILITIES = [
    "the border detention centre", "Onsong holding centre", "Camp 15", "Jongori prison", "a Ministry of State "
    "Security facility", "Chongori re-education camp", "a police holding cell", "Kaechon prison", "a labour "
    "training camp", "an immigration detention centre", "the city jail", "Camp 25",
]  # fmt: skip

VERBS = {
    "return": ["forcibly repatriates", "sends back", "deports", "hands over", "returns"],
    "detention": ["detains", "arrests", "holds", "jails", "locks up"],
    "disappearance": ["disappears", "abducts", "seizes", "takes away", "makes vanish"],
    "abuse": ["tortures", "abuses", "beats", "mistreats", "assaults"],
    "labour": ["forces into labour", "traffics", "sells", "exploits", "forces to work"],
    "killing": ["executes", "kills", "shoots", "puts to death", "executes publicly"],
}
PASSIVES = {
    "return": ["forcibly repatriated", "sent back to North Korea", "deported", "handed over to the North", "returned"],
    "detention": ["detained", "arrested", "held without charge", "jailed", "locked up"],
    "disappearance": ["missing", "disappeared", "abducted", "unaccounted for", "taken away"],
    "abuse": ["tortured", "abused", "beaten", "mistreated", "assaulted in custody"],
    "labour": ["forced into labour", "trafficked", "sold", "exploited", "made to work unpaid"],
    "killing": ["executed", "killed", "shot", "put to death", "executed in public"],
}
NOUNS = {
    "return": ["Forced return", "Repatriation", "Deportation", "Refoulement", "Handover"],
    "detention": ["Detention", "Arrest", "Imprisonment", "Arbitrary detention", "Jailing"],
    "disappearance": ["Disappearance", "Abduction", "Enforced disappearance", "Vanishing", "Seizure"],
    "abuse": ["Torture", "Abuse", "Beating", "Ill-treatment", "Assault"],
    "labour": ["Forced labour", "Trafficking", "Sale", "Exploitation", "Servitude"],
    "killing": ["Execution", "Killing", "Shooting", "Public execution", "Summary execution"],
}

TITLE_TEMPLATES = [
    "{actor} {verb} {count}{group} {circumstance} in {place}",
    "{count}{group} {passive} in {place} after being {circumstance}",
    "{place}: {count}{group} {passive}{when}",
    "{noun} of {count}{group} in {place}{when}",
    "{person_lead}{count}{group} {passive} by {actor} near {place}",
    "Report: {actor} {verb} {count}{group} from {place}",
    "{count}{group} {circumstance} and {passive}, {place}",
    "{noun} in {place}: {count}{group}{with_children}",
    "{actor} {verb} {count}{group} held at {facility}",
    "Witnesses: {count}{group} {passive} after {place} arrests{when}",
]

DESCRIPTION_SENTENCES = [
    "According to {outlet}, {count}{group} were {circumstance} in {locality}{place} and {passive}.",
    "{count}{group} were {passive} by {actor}{when}.",
    "The group was {circumstance}; {person_among}",
    "They were held at {facility} before being {passive}.",
    "{children_sentence}",
    "Relatives said they had no news of them since.",
    "{outlet} could not independently confirm the figure.",
]
# Villages, districts and crossings: a syllable pair and a suffix ("Sambong-ri"), so many to a city.
LOCALITIES_PER_CITY = 40
# How often a report names the locality (percent).
LOCALITY_NAMED = 75
SYLLABLES = [
    "Sam", "Bong", "Song", "Hak", "Nam", "Puk", "Tong", "Sin", "Kum", "Un", "Chon", "Ryong", "Hwa", "San", "Pyong",
    "Dok", "Ok", "Mun", "Jang", "Yon", "Hae", "Kang", "Su", "Dae", "Gol", "Ma", "Rak", "Chil", "Ho", "Yang",
]  # fmt: skip
LOCALITY_SUFFIXES = ["-ri", "-dong", " village", " district", " crossing", "-gu"]


def locality_name(city: str, index: int) -> str:
    """The name of a city's `index`th locality, the same in every run."""
    draws = _Draws(zlib.crc32(city.encode()) << 8 ^ index)
    return f"{draws.choice(SYLLABLES)}{draws.choice(SYLLABLES).lower()}{draws.choice(LOCALITY_SUFFIXES)}"


# How often a report words the victims and what happened as the first account did.
ECHOED = 60

OUTLETS = ["a local source", "a rights group", "relatives", "a witness", "church workers", "a broker", "activists"]


@dataclass(frozen=True)
class EventFacts:
    """What an event is, whichever outlet reports it."""

    group: int
    circumstance: int
    # How the first account (an NGO's statement, a witness) put them, which most reports echo.
    group_words: int
    circumstance_words: int
    surname: int | None
    given_name: int
    facility: int
    locality: int
    children: int | None


def event_facts(seed: int, number: int) -> tuple[EventFacts, _Draws]:
    """The facts of the event the `number`th incident of a run reports, and the draws that worded
    it first."""
    draws = _Draws(seed << 32 ^ number)
    facts = EventFacts(
        group=(group := draws.below(len(GROUPS))),
        circumstance=(circumstance := draws.below(len(CIRCUMSTANCES))),
        group_words=draws.below(len(GROUPS[group])),
        circumstance_words=draws.below(len(CIRCUMSTANCES[circumstance])),
        surname=draws.below(len(SURNAMES)) if draws.chance(45) else None,
        given_name=draws.below(len(GIVEN_NAMES)),
        facility=draws.below(len(FACILITIES)),
        locality=draws.below(LOCALITIES_PER_CITY),
        children=draws.below(6) + 1 if draws.chance(25) else None,
    )
    return facts, draws


def _count_phrase(best: int | None, exactly: bool, draws) -> str:
    if best is None:
        return draws.choice(["", "several ", "a group of "])
    if exactly or best < 5:
        return f"{best} "
    rounded = round(best, -1) if best >= 20 else best
    phrases = [f"{best} ", f"about {rounded} ", f"some {rounded} ", "", f"{best} "]
    if best >= 20:
        phrases.append(f"at least {rounded - 10} ")
    if 24 <= best <= 99:
        phrases.append("dozens of ")
    return draws.choice(phrases)


def _date_phrase(start: date, end: date, precision: str, draws) -> str:
    if not draws.chance(35):
        return ""
    if precision == "day":
        return f" on {start.day} {start:%B %Y}"
    if precision in ("week", "month") or (end - start).days < 40:
        return f" in {start:%B %Y}"
    return f" in {start.year}"


def report_text(
    facts: EventFacts,
    draws,
    *,
    family: str,
    country: str,
    place_name: str,
    locality: str | None = None,
    best: int | None,
    start: date,
    end: date,
    precision: str,
) -> tuple[str, str]:
    """One outlet's title and description of the event: the wording picked with `draws` (the
    original's hash, or a duplicate's random generator)."""
    spelling = draws.choice(PLACE_SPELLINGS.get(place_name, [place_name]))
    actor = draws.choice(COUNTRY_ACTORS.get(country, [country]))
    echoed = draws.chance(ECHOED)
    group = GROUPS[facts.group][facts.group_words] if echoed else draws.choice(GROUPS[facts.group])
    person = ""
    if facts.surname is not None:
        person = f"{draws.choice(SURNAMES[facts.surname])} {draws.choice(GIVEN_NAMES[facts.given_name])}"
    count = _count_phrase(best, draws.chance(50), draws)
    words = {
        "actor": actor,
        "verb": draws.choice(VERBS[family]),
        "passive": draws.choice(PASSIVES[family]),
        "noun": draws.choice(NOUNS[family]),
        "count": count,
        "group": group,
        "circumstance": (
            CIRCUMSTANCES[facts.circumstance][facts.circumstance_words]
            if echoed
            else draws.choice(CIRCUMSTANCES[facts.circumstance])
        ),
        "place": spelling,
        "locality": f"{locality}, " if locality else "",
        "facility": FACILITIES[facts.facility],
        "when": _date_phrase(start, end, precision, draws),
        "person_lead": f"{person} among " if person else "",
        "person_among": f"{person} was among them." if person else "most were in their twenties.",
        "with_children": f", {facts.children} of them children" if facts.children else "",
        "children_sentence": f"{facts.children} children were among them." if facts.children else "",
        "outlet": draws.choice(OUTLETS),
    }
    title = _capitalised(draws.choice(TITLE_TEMPLATES).format(**words))
    sentences = DESCRIPTION_SENTENCES[: 1 + draws.below(2)]
    # An outlet tells most of the particulars it knows: who, where they were held, the children.
    sentences += [sentence for sentence in DESCRIPTION_SENTENCES[2:] if draws.chance(60)]
    description = " ".join(_capitalised(sentence.format(**words)) for sentence in sentences)
    return title, " ".join(description.split())


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


class DemoReports:
    """Words the demo incidents of one seed: `original()` as the generator writes each incident,
    and `event_facts()` for the duplicates phase. Every place is read once (`read_places`), and the
    localities a run needs are written together (`take_new_places`): one query each rather than
    one per locality (a savepoint, a SELECT and an INSERT each: 23 s of a 100,000-incident load)."""

    def __init__(self, seed: int):
        self.seed = seed
        self.places: dict[int, tuple[str, int | None, str]] = {}
        self.localities: dict[tuple[int, int], tuple[int, str]] = {}
        self.first_id: int | None = None
        self._by_name: dict[tuple[int | None, str], int] = {}
        self._free_ids: Iterator[int] = iter(())
        self._new_places: list[Place] = []

    def read_places(self, *, free_ids: range) -> None:
        """Read every place (one query); the localities not there yet take their ids from `free_ids`,
        in the order the incidents first need them."""
        for pk, name, parent_id, country in Place.objects.values_list("pk", "name", "parent_id", "country"):
            self.places[pk] = (name, parent_id, country)
            self._by_name[(parent_id, name)] = pk
        self._free_ids = iter(free_ids)

    def place(self, place_id: int) -> tuple[str, int | None, str]:
        """(name, parent id, country code) of a place read by `read_places` or made since."""
        return self.places[place_id]

    def _key(self, incident_id: int) -> int:
        # Counted from the run's first incident, not by id: ids move on from run to run (a rolled
        # back run keeps its sequence's values), and the same seed must give the same data.
        if self.first_id is None:
            self.first_id = incident_id
        return incident_id - self.first_id

    def event_facts(self, incident_id: int) -> EventFacts:
        return event_facts(self.seed, self._key(incident_id))[0]

    def locality(self, city_id: int, index: int) -> tuple[int, str]:
        """(id, name) of a city's `index`th locality, a place under it: the one there is, or a new
        one `take_new_places` hands over."""
        key = (city_id, index)
        if key not in self.localities:
            city, _, country = self.place(city_id)
            name = locality_name(city, index)
            place_id = self._by_name.get((city_id, name))
            if place_id is None:
                place_id = self._by_name[(city_id, name)] = next(self._free_ids)
                self._new_places.append(
                    Place(
                        pk=place_id, name=name, parent_id=city_id, kind="other", country=country, country_inherited=True
                    )
                )
                self.places[place_id] = (name, city_id, country)
            self.localities[key] = (place_id, name)
        return self.localities[key]

    def take_new_places(self) -> list[Place]:
        """The localities made since the last call, to be written before the rows that point at them."""
        new_places, self._new_places = self._new_places, []
        return new_places

    def original(
        self, incident_id: int, *, slug: str, place_id: int, best: int | None, start: date, end: date, precision: str
    ) -> tuple[str, str, int]:
        """The title, description and place of demo incident `incident_id` (placed in the city
        `place_id`), the first report of its event. Most reports name the village, district or
        crossing, and the analyst records that place (under the city); the others only the city."""
        facts, draws = event_facts(self.seed, self._key(incident_id))
        name, _, country = self.place(place_id)
        locality = None
        if draws.chance(LOCALITY_NAMED):
            place_id, locality = self.locality(place_id, facts.locality)
        title, description = report_text(
            facts, draws, family=FAMILY[slug], country=country, place_name=name, locality=locality, best=best,
            start=start, end=end, precision=precision,
        )  # fmt: skip
        return title, description, place_id
