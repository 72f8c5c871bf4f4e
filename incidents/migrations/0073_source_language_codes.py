"""A source's language is an ISO 639 code (`incidents.languages`), not free text: "English", "en",
"EN" and "ko-KR" split the filters and statistics by language.

The languages recorded before are read as codes: a code in any case or with a region ("EN",
"ko-KR": en, ko), a three-letter code of a language that has two ("kor": ko), a language's name in
English, Korean or its own words ("English", "Korean", "한국어", "Chinese (Simplified)"). A value
that names no language is not lost: the language becomes blank (not known) and the value is kept
at the end of the source's notes, after "Language, as recorded before it was a code:". Each change
is in the source's history (by no user) and starts a new version of the source, as a write would.
The migration prints how many sources it changed of each kind; on a database made since the rule
there are none."""

import sys

from django.core.exceptions import ValidationError
from django.db import migrations, models
from django.db.models.functions import Concat
from django.template.defaultfilters import pluralize
from django.utils import timezone

import incidents.languages
from incidents.languages import language_code, language_named

KEPT_IN_NOTES = "Language, as recorded before it was a code: "

# The constraint as Source declares it today, frozen here.
SOURCE_LANGUAGE_CODE = models.CheckConstraint(
    condition=models.Q(language="") | models.Q(language__regex=r"^[a-z]{2,3}$"),
    name="source_language_code",
    violation_error_code="not_a_language_code",
    violation_error_message=(
        "Give an ISO 639 language code: two letters where ISO 639-1 has them (en, ko, zh), "
        "else ISO 639-3's three (yue), or leave it blank if the language is not known."
    ),
)


def code_for(recorded: str) -> str | None:
    """The code a language recorded as free text is written as ("" for "und"), or None when it
    names no language."""
    try:
        return language_code(recorded)
    except ValidationError:
        return language_named(recorded)


def _sources(changes: list[tuple[str, int]]) -> str:
    count = sum(changed for _, changed in changes)
    return f"{count} source{pluralize(count)}"


def _each(changes: list[tuple[str, int]]) -> str:
    return ", ".join(f"{change}: {changed}" for change, changed in changes)


def languages_as_codes(apps, schema_editor):
    sources = apps.get_model("incidents", "Source")._base_manager
    now = timezone.now()
    new_version = {"version": models.F("version") + 1, "updated_at": now}
    written, kept = [], []
    # In code point order, the same on every database whatever its collation.
    for recorded in sorted(sources.exclude(language="").values_list("language", flat=True).distinct().order_by()):
        code = code_for(recorded)
        if code == recorded:
            continue
        recording = sources.filter(language=recorded)
        if code is not None:
            written.append((f"“{recorded}” as {code or 'blank'}", recording.update(language=code, **new_version)))
            continue
        line = f"{KEPT_IN_NOTES}{recorded}"
        notes = models.Case(
            models.When(notes="", then=models.Value(line)),
            default=Concat("notes", models.Value(f"\n\n{line}")),
            output_field=models.TextField(),
        )
        kept.append((f"“{recorded}”", recording.update(language="", notes=notes, **new_version)))
    if written:
        sys.stdout.write(
            f"\n  {_sources(written)} recorded their language otherwise than as its code ({_each(written)}): "
            "now the code, recorded in their history."
        )
    if kept:
        sys.stdout.write(
            f"\n  {_sources(kept)} recorded a language that names none ({_each(kept)}): now blank, what they "
            f"recorded kept at the end of their notes after “{KEPT_IN_NOTES.strip()}”, and in their history.\n"
        )
    # Deferred trigger events would stop the constraint's ALTER TABLE (PostgreSQL alters no table
    # with trigger events pending).
    schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0072_date_label_says_the_whole_range"),
    ]

    operations = [
        migrations.RunPython(languages_as_codes, migrations.RunPython.noop),
        *(
            migrations.AlterField(
                model_name=model_name,
                name="language",
                field=incidents.languages.LanguageCodeField(
                    blank=True,
                    help_text=(
                        "ISO 639 language code: two letters where ISO 639-1 has them (en, ko, zh), else ISO "
                        "639-3's three (yue); blank if not known. Any case or a tag with a region is read as "
                        "the code (EN, ko-KR: en, ko)."
                    ),
                    max_length=16,
                ),
            )
            for model_name in ("source", "sourceevent")
        ),
        migrations.AddConstraint(model_name="source", constraint=SOURCE_LANGUAGE_CODE),
    ]
