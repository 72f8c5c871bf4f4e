"""The duplicates' kept word counts, counted again at their next use: words of every script now
count (`incidents.duplicates.comparable_text`), where Korean and Chinese text was folded away, so
the kept counts hold none of them. Read as absent, they are counted again by the next rescoring
(`corpus_counts`) or whole-database run. Pairs already queued keep their scores until then: run
`python manage.py find_duplicates` to score Korean and Chinese incidents by their words."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("incidents", "0110_versions_kept_while_hidden")]

    operations = [
        migrations.RunSQL("DELETE FROM incidents_duplicatewordfrequencies", migrations.RunSQL.noop),
    ]
