"""A place's country taken from the place containing it follows that place: `country_inherited`.

A place entered without a country took its parent's (`Place.save`, migration 0015) as a copy kept
for good: a province entered under China and moved under North Korea, or the places inside a country
whose code was corrected, kept the old country, and with it their incidents' country counts,
filters and `countries` cells, until each was corrected by hand. Now the copy is marked, a place
moved takes its new parent's (`services._country_followed`), and the trigger
`keep_country_followed` gives a place's new country to the places inside it that follow it, a level
a statement, as `keep_within_sensitive` passes the sensitive mark down; a country a writer gives is
theirs.

Which of the existing places took their country so was not recorded. A place whose country is its
parent's is marked as following it: the country a place shares with what contains it is, whichever
way it was given, the one a correction of that place's should carry down. A place given a country
other than its parent's keeps it. The mark is no event in the history (it says how the country it
records was given), and no country changes, so neither the export rows nor the statistics move.
"""

import django_countries.fields
import pgtrigger.compiler
import pgtrigger.migrations
from django.db import migrations, models

# The places whose country is their parent's are marked as following it.
MARK_FOLLOWERS_SQL = """
UPDATE incidents_place AS place SET country_inherited = true
FROM incidents_place AS parent
WHERE parent.id = place.parent_id AND place.country = parent.country AND place.country <> ''
"""


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0102_incident_public_versions"),
    ]

    operations = [
        # The deferred checks and counts of writes earlier in one transaction run now: PostgreSQL
        # alters no table with trigger events pending (as migrations 0101 and 0102 do).
        migrations.RunSQL("SET CONSTRAINTS ALL IMMEDIATE", migrations.RunSQL.noop),
        pgtrigger.migrations.RemoveTrigger(
            model_name="place",
            name="update_update",
        ),
        migrations.AddField(
            model_name="place",
            name="country_inherited",
            field=models.BooleanField(
                db_default=False,
                default=False,
                editable=False,
                help_text="Its country is the nearest containing place's, and follows it.",
                verbose_name="country from the place containing it",
            ),
        ),
        migrations.AlterField(
            model_name="place",
            name="country",
            field=django_countries.fields.CountryField(
                blank=True,
                help_text="Left blank, the country of the place that contains it, which it then follows: moved into another place, or that place's country corrected, it takes the new one.",
                max_length=2,
            ),
        ),
        migrations.AlterField(
            model_name="placeevent",
            name="country",
            field=django_countries.fields.CountryField(
                blank=True,
                help_text="Left blank, the country of the place that contains it, which it then follows: moved into another place, or that place's country corrected, it takes the new one.",
                max_length=2,
            ),
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="place",
            trigger=pgtrigger.compiler.Trigger(
                name="keep_country_followed",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    condition='WHEN (NEW."country" > \'\' AND OLD."country" IS DISTINCT FROM (NEW."country"))',
                    func="\n                UPDATE incidents_place\n                SET country = NEW.country, country_inherited = true, version = version + 1,\n                    updated_at = statement_timestamp()\n                WHERE parent_id = NEW.id AND (country = '' OR country_inherited) AND country <> NEW.country;\n                RETURN NULL;\n                ",
                    hash="44f27123f8af74bea9ec35f909472b86dc25a551",
                    operation="UPDATE",
                    pgid="pgtrigger_keep_country_followed_bb1c9",
                    table="incidents_place",
                    when="AFTER",
                ),
            ),
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="place",
            trigger=pgtrigger.compiler.Trigger(
                name="update_update",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    condition="WHEN ((to_jsonb(OLD) - 'within_sensitive' - 'country_inherited' - 'public_version' - 'public_updated_at') IS DISTINCT FROM (to_jsonb(NEW) - 'within_sensitive' - 'country_inherited' - 'public_version' - 'public_updated_at'))",
                    func='INSERT INTO "incidents_placeevent" ("alternate_names", "country", "created_at", "id", "kind", "latitude", "longitude", "name", "parent_id", "pgh_context_id", "pgh_created_at", "pgh_label", "pgh_obj_id", "sensitive", "updated_at", "version") VALUES (NEW."alternate_names", NEW."country", NEW."created_at", NEW."id", NEW."kind", NEW."latitude", NEW."longitude", NEW."name", NEW."parent_id", _pgh_attach_context(), NOW(), \'update\', NEW."id", NEW."sensitive", NEW."updated_at", NEW."version"); RETURN NULL;',
                    hash="6e43c50cbae13c0703549a5517089167b5b36c61",
                    operation="UPDATE",
                    pgid="pgtrigger_update_update_ce455",
                    table="incidents_place",
                    when="AFTER",
                ),
            ),
        ),
        migrations.RunSQL(MARK_FOLLOWERS_SQL, migrations.RunSQL.noop),
        # The same on the way back, where this runs first.
        migrations.RunSQL(migrations.RunSQL.noop, "SET CONSTRAINTS ALL IMMEDIATE"),
    ]
