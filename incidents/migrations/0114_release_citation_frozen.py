"""Each release's citation kept with it, as its README says it (`Release.citation`): made again from
today's settings at every read, a past release's list entry (the API's and the admin's) followed
a change of the project's author or title that its own files never saw. The releases made before
take the line under their README's "How to cite", where `release_create` wrote the citation; a
release is otherwise immutable (migration 0018), so its trigger is set aside for this one fill."""

from django.db import migrations, models

FILL_FROM_README = r"""
ALTER TABLE incidents_release DISABLE TRIGGER release_immutable;
UPDATE incidents_release AS release
SET citation = substring(convert_from(readme.content, 'UTF8') FROM E'\n## How to cite\n\n([^\n]*)')
FROM incidents_releasefile AS readme
WHERE readme.release_id = release.id AND readme.name = 'README.md';
ALTER TABLE incidents_release ENABLE TRIGGER release_immutable;
"""


class Migration(migrations.Migration):
    dependencies = [("incidents", "0113_merged_incidents_name_a_live_one")]

    operations = [
        migrations.AddField(
            model_name="release",
            name="citation",
            field=models.TextField(default="", editable=False, help_text="How to cite it, as its README says."),
            preserve_default=False,
        ),
        migrations.RunSQL(FILL_FROM_README, migrations.RunSQL.noop),
    ]
