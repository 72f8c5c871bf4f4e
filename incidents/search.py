"""The one search of incidents: the admin's search box and the `q` filter (API lists, CSV exports,
statistics) parse the same words and find the same incidents.

A search is up to MAX_TERMS words or "quoted phrases"; a `-` before one leaves out the incidents it
matches. Every word must match, each anywhere among an incident's words (IncidentSearchDocument):
its public id (`INC-000042`), title and description, its places' names and alternate names, the
names, acronyms and aliases of the organizations involved, and, for the claims the reader may see,
their excerpts, their sources' titles and their sources' publishers' names, acronyms and aliases.
Words match whole, in any case, without stemming ("repatriation" does not find "repatriations"),
unless they end in `*`: `repatriat*` finds every word that starts so. Accents are left out
(`Sinuiju` finds `Sinŭiju`), compatibility forms are their plain ones (full-width `HRW` is
`HRW`), McCune-Reischauer's apostrophes too (`Chongjin` finds `Ch'ŏngjin`), and a hyphenated word
is its parts (`Jong-un` finds `Jong Un`). Korean, Chinese and Japanese words are found inside the
runs of their letters, by their overlapping pairs (`searched_text`): Chinese and Japanese put no
space between words (`延吉` must find `中国公安在延吉市抓捕了脱北者`), Korean writes its nouns
together and its particles and endings onto them (`북송` must find `강제북송을`). So "HRW
repatriation" finds an incident titled "… repatriation" that a Human Rights Watch report is cited
for. A claim the reader may not see never makes an incident match: a search never reveals a
confidential source.

All of that is one tsvector per incident, kept by PostgreSQL (migration 0019), with one GIN index
per audience, so one condition answers the whole search. The confidential claims' words are kept
only for the incidents that have some (migration 0041): a reader with the permission searches those
where they are kept and the words anyone may read elsewhere (`_words_read_by`), in the same
condition. How it is read depends on how many
incidents match, which PostgreSQL's statistics on the words tell (IncidentSearch._few_matches):
fewer than COLLECT_BELOW are collected from the index and sorted; more are found by testing
incidents in the list's order, which stops after a page (collecting hundreds of thousands of
matches to sort them would take seconds). Where the statistics can only guess (several words,
taken as independent; a phrase, taken as its words anywhere; a prefix), the matches among the
incidents the reader may see are counted up to that bound: a phrase of common words that few
incidents have (`"by in"`) would otherwise test every incident in the list's order to find them.
A search that only leaves words out (`q=-zzzz`) is always the latter: the newest incidents,
testing a few rows, as long as enough incidents lack the words (MIN_SHARE_LEFT; `q=-inc`, a word
of every public id, is refused at scale; `-"by in"`, a phrase, by counting); and when the words it
leaves out are in no incident the reader may see (as they may read its words), the statistics
answer from their kept totals (`selects_everything`), when they are in few, from their kept totals
less those few incidents (`left_out`).
"""

import json
import math
import re
import unicodedata
from functools import cached_property
from typing import NamedTuple

from django.contrib.auth.models import AnonymousUser
from django.contrib.postgres.expressions import ArraySubquery
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.search import SearchQuery
from django.core.exceptions import ValidationError
from django.core.validators import ProhibitNullCharactersValidator
from django.db.models import BigIntegerField, BooleanField, F, Func, Value
from django.utils.text import get_text_list
from django.utils.translation import gettext as _

from incidents.models import SEARCH_CONFIG, Incident, IncidentSearchDocument
from incidents.querysets import can_see_confidential
from incidents.text_fields import INVISIBLE_IN_WORDS, UNSPACED_BREAK

# Bounds on one search, so that none holds a worker for long (issue 17); every admin search box
# keeps them too (accounts/admin_site.py).
MAX_LENGTH = 200
MAX_TERMS = 8
# Up to how many matching incidents a search collects them from the index and sorts them (reading
# each one's row: about 100 ms for 5,000 on a busy machine); from there, it tests incidents in the
# list's order instead (see `IncidentSearch.filter`): at 1,000,000 incidents, 5,000 are 0.5%, so a
# page of 50 is found among the first 10,000 read, each a lookup in the index of their words.
COLLECT_BELOW = 5_000
# A search that only leaves words out is served by testing incidents in the list's order until a
# page is full: about page size / share rows read. Below this share of incidents (PostgreSQL's
# estimate) it is refused instead. At 1,000,000 incidents (warm, load 3): `-the` (9% of incidents
# lack it) took 25 ms a page of 50, `-the -north` (2%) 52 ms and 162 ms a page of 200, while `-inc`
# (a word of every public id) read every incident's words to find none, 0.64 s warm and 2.2 s cold.
# No index finds what lacks a word: a user who means "the few incidents without X" is better served
# by being asked for a word they have. Where there are few incidents in all, reading every one is
# cheap (a tenth of the million's 0.64-2.2 s below this many), and the search is served.
MIN_SHARE_LEFT = 0.02
REFUSED_ABOVE_INCIDENTS = 100_000

# A word, or a phrase in double quotes (the closing quote may be missing), either after a `-`.
_TERM = re.compile(r'(?P<excluded>-?)(?:"(?P<phrase>[^"]*)"?|(?P<word>[^\s"]+))')
# The letters of Korean, Chinese and Japanese words, the same as migration 0118's, which makes the
# incidents' words of them (incident_search_text): Hangul jamo and syllables, kana (without the
# middle dot ・, which parts names), the iteration marks (U+3005-U+3007), and the CJK ideographs.
CJK_LETTERS = (
    r"\u1100-\u11ff\u3005-\u3007\u3040-\u30fa\u30fc-\u30ff\u3130-\u318f\u31f0-\u31ff"
    r"\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7a3\uf900-\ufaff\U00020000-\U0003134f"
)
_CJK_RUN = re.compile(f"[{CJK_LETTERS}]+")
_CJK_INSIDE = re.compile(f"(?<=[{CJK_LETTERS}])[{CJK_LETTERS}](?=[{CJK_LETTERS}])")
# McCune-Reischauer's apostrophe of an aspirated consonant, before a vowel, in any of the forms it
# is typed in (the same as migration 0118's): `Ch'ŏngjin` is `Chŏngjin`, so `Chongjin` finds it.
MR_APOSTROPHE = "(?<=[kpthKPTH])['’ʼ‘`](?=[aeiouwyAEIOUWYŏŭöüŎŬÖÜ])"
_MR_APOSTROPHE = re.compile(MR_APOSTROPHE)
_WITHOUT_INVISIBLE = str.maketrans(dict.fromkeys(INVISIBLE_IN_WORDS))
# Letters or digits a word must have before its `*`: `a*` would find nearly every incident.
MIN_PREFIX = 2
# A run of letters or digits: PostgreSQL's parser makes a word of each (`by_in` is `by` and `in`).
_WORD = re.compile(r"[^\W_]+")


def visible_text(text: str) -> str:
    """`text` without the invisible characters that hide inside words (text_fields'
    `INVISIBLE_IN_WORDS`; a zero-width space between words of a script written without spaces a
    space, `UNSPACED_LETTERS`), in compatibility normal form (NFKC: full-width `HRW` is `HRW`)."""
    return unicodedata.normalize("NFKC", UNSPACED_BREAK.sub(" ", text).translate(_WITHOUT_INVISIBLE))


def searched_text(text: str) -> str:
    """`text` as the incidents' words are parsed from it (migration 0119's incident_search_text):
    its `visible_text`, without McCune-Reischauer's apostrophes (`MR_APOSTROPHE`), each run of
    Korean, Chinese or Japanese letters apart and written as its overlapping pairs: `据HRW报告` is
    ` 据 HRW 报告 `, `강제북송을` ` 강제 제북 북송 송을 `. A word of those letters is thus found
    inside a longer run, as the phrase of its pairs; one letter alone finds itself alone (`북`, not
    every word holding it)."""
    spaced = _CJK_RUN.sub(r" \g<0> ", _MR_APOSTROPHE.sub("", visible_text(text)))
    return _CJK_INSIDE.sub(r"\g<0> \g<0>", spaced)


class SearchTerm(NamedTuple):
    """A word or "phrase" of a search; `excluded` when a `-` before it leaves out what it matches;
    `prefix` when it finds the words that start with it (`repatriat*`)."""

    words: str
    phrase: bool
    excluded: bool
    prefix: bool = False

    def __str__(self) -> str:
        """The term as it may be typed again: parsed, it is this term."""
        return self.as_text() + ("*" if self.prefix else "")

    def as_text(self) -> str:
        """The term for a search that reads text (the admin's search of other records), without a
        `*`: its `ILIKE '%word%'` finds what starts with the word already."""
        quoted = f'"{self.words}"' if self.phrase else self.words
        return f"-{quoted}" if self.excluded else quoted

    def query(self) -> SearchQuery:
        """The tsquery of the term's `searched_text`: a word of Korean, Chinese or Japanese letters
        is the phrase of their pairs (`延吉市` is `延吉 <-> 吉市`); a prefix is its words quoted for
        `to_tsquery`, which splits them as the incidents' words were split (`INC-0000*` is `inc`
        followed by a word starting `-0000`) and marks each a prefix."""
        words = searched_text(self.words)
        if not self.prefix:
            phrase = self.phrase or _CJK_RUN.search(self.words) is not None
            return SearchQuery(words, search_type="phrase" if phrase else "plain", config=SEARCH_CONFIG)
        quoted = words.replace("\\", "\\\\").replace("'", "''")
        return SearchQuery(f"'{quoted}':*", search_type="raw", config=SEARCH_CONFIG)

    @property
    def several_words(self) -> bool:
        """Whether the term is several words to PostgreSQL (a phrase, a word punctuation splits, or
        a run of three CJK letters or more, two pairs or more), whose statistics then estimate its
        matches as those of all its words anywhere: `"by in"` as `by` and `in`, 60% of the demo
        incidents, where none has the phrase."""
        return len(_WORD.findall(searched_text(self.words))) > 1

    @property
    def guessed(self) -> bool:
        """Whether PostgreSQL's statistics can only guess how many incidents the term matches: for
        several words (`several_words`); not for one whole word (most searches), nor for a prefix
        of one word, whose estimate (the matches of the common words that start so) is seldom far
        too high, and which counted cost a common prefix its first matches collected every time
        (`detain*` 21-35 ms -> 136-149 ms at 200,000 incidents, bench/README.md "Phrases of
        common words"). Two prefixes (`in* in*`) are two terms, counted as several words are."""
        return self.several_words

    @property
    def underestimated(self) -> bool:
        """Whether PostgreSQL's statistics may take the term for far rarer than it is: a word of
        three CJK letters or more is the phrase of its pairs, which they take as independent, when
        a word's pairs come together (脱北 and 北者, 3% of incidents each, are 0.09% together
        where 3% have 脱北者). Its matches are then counted whatever the estimate (`_few_matches`):
        collected on its word, the many would be read and sorted."""
        return any(len(run) > 2 for run in _CJK_RUN.findall(visible_text(self.words)))


def search_terms(text: str, *, as_text: bool = False) -> list[SearchTerm]:
    """The distinct words and phrases of `text` (the same in any case counts once), or a
    ValidationError saying which bound it passes. Pieces without a letter or digit (a lone `-`,
    punctuation) find nothing in the incidents' words, which PostgreSQL's parser makes of letters
    and digits alone: left out; a search of nothing else is refused. Searched `as_text` (the
    admin's `ILIKE '%…%'` over the fields of other records), they find what holds them (`@`, every
    email address), at the cost of any one-letter search there: kept. A NUL character,
    which PostgreSQL's text cannot hold, is refused: the admin's autocomplete (a claim's source,
    typed `a%00b`) sent it to the database's ILIKE, a 500."""
    ProhibitNullCharactersValidator()(text)
    if len(text) > MAX_LENGTH:
        raise ValidationError(
            _("Search at most %(limit)d characters (this search has %(length)d)."),
            code="max_length",
            params={"limit": MAX_LENGTH, "length": len(text)},
        )
    terms = {}
    for found in _TERM.finditer(text):
        phrase = found["phrase"] is not None
        words = " ".join((found["phrase"] if phrase else found["word"]).split())
        excluded = bool(found["excluded"])
        starred = not phrase and words.endswith("*")
        words = words.rstrip("*") if starred else words
        if not words or not (as_text or any(character.isalnum() for character in words)):
            continue
        if starred and sum(character.isalnum() for character in words) < MIN_PREFIX:
            raise ValidationError(
                _("Put at least %(limit)d letters or digits before * (“%(word)s*”): it finds the words that start so."),
                code="short_prefix",
                params={"limit": MIN_PREFIX, "word": words},
            )
        terms.setdefault((words.casefold(), phrase, excluded, starred), SearchTerm(words, phrase, excluded, starred))
    if not terms and text.strip():
        # Punctuation alone (`!!!`, a lone `-`), an empty phrase, or bytes that are no UTF-8 (which
        # Django decodes as U+FFFD): a search with no word to find, which every door answered with
        # every record, as if no search had been asked.
        raise ValidationError(
            _("Search for at least one word of letters or digits: this search has none to find."),
            code="no_word",
        )
    if len(terms) > MAX_TERMS:
        raise ValidationError(
            _('Search at most %(limit)d words or "phrases" at a time (this search has %(count)d).'),
            code="max_terms",
            params={"limit": MAX_TERMS, "count": len(terms)},
        )
    return list(terms.values())


class IdIn(Func):
    """`id = ANY(ARRAY(subquery))`, or `id = ANY(ids)` for ids already collected: unlike `id IN
    (subquery)`, PostgreSQL reads these ids through the primary key index whatever it guesses of
    their number, rather than reading the whole list in its order in the hope of meeting them early."""

    template = "(%(expressions)s))"
    arg_joiner = " = ANY("
    output_field = BooleanField()


class IncidentSearch:
    """A parsed search; `filter(incidents, user=…)` applies it to an incident queryset.
    `included_guessed` (`excluded_guessed`): whether PostgreSQL's statistics can only guess how many
    incidents match the words it finds (any of those it leaves out): several words to find, taken
    as independent, or a term that is `SearchTerm.guessed`; `included_underestimated`
    (`excluded_underestimated`): whether they may guess far too few (`SearchTerm.underestimated`)."""

    def __init__(
        self,
        included: list[SearchQuery],
        excluded: list[SearchQuery],
        *,
        included_guessed: bool,
        excluded_guessed: bool,
        included_underestimated: bool = False,
        excluded_underestimated: bool = False,
    ):
        self.included = included
        self.excluded = excluded
        self.included_guessed = included_guessed
        self.excluded_guessed = excluded_guessed
        self.included_underestimated = included_underestimated
        self.excluded_underestimated = excluded_underestimated
        # `_collected_if_few` by reader: the bound it was asked for and the ids it found. The browse
        # page filters its list and each facet by the same search, and the statistics ask whether
        # it leaves anything out first, which would otherwise collect the same matches each time.
        self._collected = {}

    @classmethod
    def parse(cls, text: str) -> "IncidentSearch":
        """The search of `text`'s words and phrases (`search_terms`), or a ValidationError saying
        which bound it passes. In composed form, as every text is stored (`TextInNormalForm`): a
        word typed or pasted decomposed found nothing."""
        terms = {True: [], False: []}
        for term in search_terms(unicodedata.normalize("NFC", text)):
            terms[term.excluded].append(term)
        included, excluded = terms[False], terms[True]
        search = cls(
            included=[term.query() for term in included],
            excluded=[term.query() for term in excluded],
            included_guessed=len(included) > 1 or any(term.guessed for term in included),
            excluded_guessed=any(term.guessed for term in excluded),
            included_underestimated=any(term.underestimated for term in included),
            excluded_underestimated=any(term.underestimated for term in excluded),
        )
        # A prefix left out keeps the estimate: its common words' shares summed err towards refusing
        # only where those words are nearly everywhere themselves (`-th*`), which a count would find
        # by reading every incident's words.
        counted = any(term.several_words for term in excluded)
        if not included and excluded and search._reads_nearly_every_incident(counted=counted):
            raise ValidationError(
                _(
                    "Nearly every incident has %(words)s: a search that only leaves out words so common would "
                    "read every incident. Add a word to find, or leave out rarer ones."
                ),
                code="too_common",
                # `"a", "b" or "c"` in the reader's language (Django's own "or").
                params={"words": get_text_list([f'"{term.words}"' for term in excluded])},
            )
        return search

    def _query(self) -> SearchQuery | None:
        """Every included word and none of the excluded ones, as one tsquery (None: no words)."""
        parts = [*self.included, *(~excluded for excluded in self.excluded)]
        if not parts:
            return None
        query = parts[0]
        for part in parts[1:]:
            query &= part
        return query

    def _any_excluded(self) -> SearchQuery:
        """Any of the words the search leaves out, as one tsquery (it must leave some out)."""
        any_excluded = self.excluded[0]
        for excluded in self.excluded[1:]:
            any_excluded |= excluded
        return any_excluded

    def left_out(self) -> "IncidentSearch":
        """The search of the incidents this one leaves out, for a search that only leaves words
        out: those with any of its words. Over what a reader may see, the two share no incident and
        together are all of them, so a statistic of this one's few matches, taken from kept totals,
        answers the other (`incidents.statistics`)."""
        return self._left_out

    @cached_property
    def _left_out(self) -> "IncidentSearch":
        """`left_out()`, made once, so that the matches it collects are collected once."""
        return IncidentSearch(
            included=[self._any_excluded()],
            excluded=[],
            included_guessed=self.excluded_guessed,
            excluded_guessed=False,
            included_underestimated=self.excluded_underestimated,
        )

    def selects_everything(self, *, user) -> bool:
        """True when the search leaves every incident `user` may see in: it has no words to find,
        and those it leaves out are in none of them, as `user` may read their words. One query when
        it only leaves words out, served by the index; none otherwise.

        Asked of what `user` may see only: asked of every incident, a word of a draft or of a
        confidential claim alone made the public pages answer "at least N" where they otherwise
        said "N", which told anyone that the word is in the hidden records."""
        if self.included:
            return False
        if not self.excluded:
            return True
        # Collected up to a bound above PostgreSQL's smallest guess of a word's matches, rather than
        # `exists()`: for LIMIT 1 it would read the table hoping to meet a match soon, when the
        # index says at once that there is none.
        return self.left_out()._collected_if_few(user=user, fewer_than=1_000) == []

    def filter(self, incidents, *, user):
        """The incidents of the queryset `incidents` (already limited to what `user` may see) that
        the search finds for `user`. Runs one query to choose the plan (`_few_matches`; none for a
        search that only leaves words out), two where the statistics can only guess and say many."""
        query = self._query()
        if query is None:
            return incidents
        # The bound read now, not as the signature's default when the module loaded, so that a test
        # can lower it to try the other plan.
        found = self.found_if_few(incidents, user=user, fewer_than=COLLECT_BELOW)
        if found is not None:
            return found
        if not self.included and self.excluded_guessed and _estimated_rows(self._matches(user)) < COLLECT_BELOW:
            # PostgreSQL takes a phrase left out for its words anywhere: for words nearly every
            # incident has (`-"inc inc"`, which none has) it expects few left, and read every
            # incident's words to sort what it found (2.1 s at 200,000 incidents). Every incident
            # but the few with the phrase, in the list's order, is a page's walk.
            left_out = self.left_out()._collected_if_few(user=user, fewer_than=COLLECT_BELOW)
            if left_out is not None:
                return incidents.exclude(IdIn(F("pk"), _ids(left_out)))
        # No index finds what lacks a word: a search that only leaves words out is otherwise this one.
        return incidents.filter(**{f"search_document__{_words_read_by(user)}": query})

    def found_if_few(self, incidents, *, user, fewer_than: int):
        """The incidents of the queryset `incidents` (already limited to what `user` may see) that
        the search finds for `user`, collected from the index, when it has words to find and fewer
        than `fewer_than` incidents match (`_few_matches`); else None. One query, two where the
        statistics can only guess, the first time for a reader and bound; none for a search that
        only leaves words out."""
        if not self.included:
            return None
        few = self._few_matches(user=user, fewer_than=fewer_than)
        if few is None:
            return None
        return incidents.filter(IdIn(F("pk"), few))

    def _reads_nearly_every_incident(self, *, counted: bool) -> bool:
        """Whether the search leaves in less than MIN_SHARE_LEFT of more than REFUSED_ABOVE_INCIDENTS
        incidents, by PostgreSQL's estimate from its statistics on the words anyone may read (no row
        read; a confidential claim's words never decide), or, when `counted` (a phrase is left out,
        which the statistics take for its words anywhere: `-"by in"` for `-by -in`), by counting the
        public incidents without the words, up to that share, when the estimate would refuse. One
        query, two above that many, three for such a count.

        Its words are counted where anyone may read them, whoever asks: a refusal decided by a
        draft's or a confidential claim's words would tell of them. The count stops at the share
        that serves the search, soon for a phrase few incidents have; for one nearly all have it
        reads every public incident's words, as the search would."""
        documents = IncidentSearchDocument.objects.order_by()
        incidents = _estimated_rows(documents)
        if incidents <= REFUSED_ABOVE_INCIDENTS:
            return False
        left = documents.filter(**{_DISCLOSED_WORDS: self._query()})
        enough_left = math.ceil(MIN_SHARE_LEFT * incidents)
        if _estimated_rows(left) >= enough_left:
            return False
        if not counted:
            return True
        public = Incident.objects.visible_to(AnonymousUser()).values("pk")
        return left.filter(incident__in=public)[:enough_left].count() < enough_left

    def _few_matches(self, *, user, fewer_than: int):
        """The ids of the incidents `user` may see that the search finds, for `IdIn`, when fewer
        than `fewer_than` match; else None. PostgreSQL's estimate from its statistics on the words
        (no row read) decides, unless it can only guess (`included_guessed`): several words each
        common may still be rare together ("repatriation torture"), a phrase of common words rarer
        still (`"by in"`); their matches are then collected, up to the bound, among the incidents
        `user` may see (a draft's words would otherwise choose the plan of a reader who may not
        read them), and are those ids when fewer. A count reads each match's row, which costs more
        than the estimate: for one word (most searches) the estimate is enough. One query, two when
        counted. A search the statistics may take for far rarer than it is
        (`included_underestimated`) is counted whatever they say: one query."""
        matches = self._matches(user)
        if not self.included_underestimated and _estimated_rows(matches) < fewer_than:
            return ArraySubquery(matches.values("incident_id"))
        if not self.included_guessed:
            return None
        found = self._collected_if_few(user=user, fewer_than=fewer_than)
        return None if found is None else _ids(found)

    def _collected_if_few(self, *, user, fewer_than: int) -> list[int] | None:
        """The ids of the incidents `user` may see that the search finds, read from their words,
        when fewer than `fewer_than`; else None. One query, unless an earlier call for `user` with
        a bound as high, or which found fewer, tells already: the ids taken at once rather than
        counted and then found again. A phrase's words are found in the index, then each
        incident's are read to check their order."""
        bound, found = self._collected.get(user, (0, []))
        # Known only to be at least `bound` (nothing known: 0), which does not tell.
        if len(found) == bound < fewer_than:
            readable = self._matches(user).filter(incident__in=Incident.objects.visible_to(user).values("pk"))
            found = list(readable.values_list("incident_id", flat=True)[:fewer_than])
            self._collected[user] = (fewer_than, found)
        return found if len(found) < fewer_than else None

    def _matches(self, user):
        """The search words of every incident the search finds for `user`, by the words they read."""
        return IncidentSearchDocument.objects.filter(**{_words_read_by(user): self._query()}).order_by()


# The lookups of IncidentSearchDocument that test a search against an incident's words: all of
# them (`complete` where kept, `disclosed` where the incident has no confidential claim word:
# CompleteOrDisclosedMatch), or only those anyone may read.
_EVERY_WORD = "complete__or_disclosed"
_DISCLOSED_WORDS = "disclosed"


def _words_read_by(user) -> str:
    """The lookup of the words of an incident `user` searches (IncidentSearchDocument): with the
    confidential claims' words, or only those anyone may read. The one place that chooses."""
    return _EVERY_WORD if can_see_confidential(user) else _DISCLOSED_WORDS


def _ids(found: list[int]) -> Value:
    """Incident ids collected, as one array for `IdIn`."""
    return Value(found, output_field=ArrayField(BigIntegerField()))


def _estimated_rows(queryset) -> float:
    """How many rows PostgreSQL expects `queryset` to return, from its plan (no row read). One query."""
    plan = json.loads(queryset.values("pk").explain(format="json"))
    return plan[0]["Plan"]["Plan Rows"]
