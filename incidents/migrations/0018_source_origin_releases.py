import django.db.models.deletion
import django.db.models.functions.comparison
import django.db.models.functions.text
import pgtrigger.compiler
import pgtrigger.migrations
from django.conf import settings
from django.db import migrations, models

# The origin of a source as a reader may know it: follow `cites` up the chain to the source that
# cites nothing. A reader without Confidential access stops at the last source they may see: a
# confidential source is to them what the API shows, absent (a relay of it shows `"cites": null`),
# so neither the count nor anything else tells them it exists. In SQL so that the incident list
# built by PostgreSQL (the API's projections) and the ORM's annotations and filters
# (`IncidentQuerySet.corroboration`) apply one and the same rule. PL/pgSQL, like
# `place_public_coordinates` (0007), keeps its plan for the connection's life; the depth limit
# guards against a cycle written around `Source.clean()`.
SOURCE_ORIGIN_FUNCTION = """
CREATE OR REPLACE FUNCTION source_origin(start_id bigint, through_confidential boolean)
RETURNS bigint LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    current_id bigint := start_id;
    cited record;
BEGIN
    FOR depth IN 1..64 LOOP
        SELECT source.id, source.confidential INTO cited
        FROM incidents_source citing JOIN incidents_source source ON source.id = citing.cites_id
        WHERE citing.id = current_id;
        EXIT WHEN NOT FOUND OR (cited.confidential AND NOT through_confidential);
        current_id := cited.id;
    END LOOP;
    RETURN current_id;
END
$$;
"""


# A release is cited by name and checksum: once written, neither it nor its files change or go.
# In the database, so that no door (the admin, a shell, a raw UPDATE) can alter what was cited.
# Not TRUNCATE, which only the tables' owner may run and which the test suite's flush needs.
RELEASES_IMMUTABLE = """
CREATE FUNCTION release_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'Releases are immutable: % of % refused.', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE TRIGGER release_immutable BEFORE UPDATE OR DELETE ON incidents_release
    FOR EACH ROW EXECUTE FUNCTION release_immutable();
CREATE TRIGGER release_file_immutable BEFORE UPDATE OR DELETE ON incidents_releasefile
    FOR EACH ROW EXECUTE FUNCTION release_immutable();
"""

RELEASES_MUTABLE = """
DROP TRIGGER release_immutable ON incidents_release;
DROP TRIGGER release_file_immutable ON incidents_releasefile;
DROP FUNCTION release_immutable();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0017_confidential_access"),
        ("pghistory", "0007_auto_20250421_0444"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunSQL(SOURCE_ORIGIN_FUNCTION, reverse_sql="DROP FUNCTION source_origin(bigint, boolean);"),
        migrations.CreateModel(
            name="Release",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("year", models.PositiveSmallIntegerField()),
                ("number", models.PositiveIntegerField(help_text="The release's number within its year, from 1.")),
                (
                    "name",
                    models.GeneratedField(
                        db_persist=True,
                        expression=django.db.models.functions.text.Concat(
                            models.Value("incident-tracker-"),
                            django.db.models.functions.comparison.Cast("year", models.TextField()),
                            models.Value("."),
                            django.db.models.functions.comparison.Cast("number", models.TextField()),
                            output_field=models.TextField(),
                        ),
                        output_field=models.TextField(),
                    ),
                ),
                ("as_of", models.DateTimeField(help_text="The latest change to a released incident.", null=True)),
                ("incidents", models.PositiveIntegerField(help_text="How many incidents it holds.")),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "created_by",
                    models.ForeignKey(
                        editable=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["-year", "-number"],
            },
        ),
        migrations.CreateModel(
            name="ReleaseFile",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(help_text="File name, e.g. incidents.csv.", max_length=64)),
                ("media_type", models.CharField(max_length=64)),
                ("content", models.BinaryField()),
                ("sha256", models.CharField(help_text="SHA-256 of the content, in hexadecimal.", max_length=64)),
                ("size", models.PositiveBigIntegerField(help_text="Size of the content in bytes.")),
                (
                    "release",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, related_name="files", to="incidents.release"
                    ),
                ),
            ],
            options={
                "ordering": ["release", "name"],
            },
        ),
        migrations.AddConstraint(
            model_name="release",
            constraint=models.UniqueConstraint(fields=("year", "number"), name="release_year_number_unique"),
        ),
        migrations.AddConstraint(
            model_name="release",
            constraint=models.UniqueConstraint(fields=("name",), name="release_name_unique"),
        ),
        migrations.AddConstraint(
            model_name="release",
            constraint=models.CheckConstraint(condition=models.Q(("number__gte", 1)), name="release_number_from_one"),
        ),
        migrations.AddConstraint(
            model_name="releasefile",
            constraint=models.UniqueConstraint(fields=("release", "name"), name="release_file_name_unique"),
        ),
        migrations.AddConstraint(
            model_name="releasefile",
            constraint=models.CheckConstraint(
                condition=models.Q(("size", models.Func(models.F("content"), function="octet_length"))),
                name="release_file_size",
            ),
        ),
        migrations.AddConstraint(
            model_name="releasefile",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    (
                        "sha256",
                        models.Func(
                            models.Func(models.F("content"), function="sha256"), models.Value("hex"), function="encode"
                        ),
                    )
                ),
                name="release_file_sha256",
            ),
        ),
        migrations.CreateModel(
            name="DuplicatePair",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "score",
                    models.FloatField(help_text="From 0 (nothing alike) to 1 (alike in every respect compared)."),
                ),
                (
                    "decision",
                    models.CharField(
                        choices=[
                            ("pending", "Not reviewed"),
                            ("same", "Same incident"),
                            ("different", "Different incidents"),
                            ("unsure", "Unsure"),
                        ],
                        default="pending",
                        max_length=10,
                    ),
                ),
                ("decided_at", models.DateTimeField(blank=True, editable=False, null=True)),
                ("note", models.TextField(blank=True, help_text="Why, for the history.")),
                (
                    "decided_by",
                    models.ForeignKey(
                        blank=True,
                        editable=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "incident_a",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="incidents.incident"
                    ),
                ),
                (
                    "incident_b",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="incidents.incident"
                    ),
                ),
            ],
            options={
                "ordering": ["-score", "id"],
            },
        ),
        migrations.CreateModel(
            name="DuplicatePairEvent",
            fields=[
                ("pgh_id", models.AutoField(primary_key=True, serialize=False)),
                ("pgh_created_at", models.DateTimeField(auto_now_add=True)),
                ("pgh_label", models.TextField(help_text="The event label.")),
                ("id", models.BigIntegerField()),
                (
                    "score",
                    models.FloatField(help_text="From 0 (nothing alike) to 1 (alike in every respect compared)."),
                ),
                (
                    "decision",
                    models.CharField(
                        choices=[
                            ("pending", "Not reviewed"),
                            ("same", "Same incident"),
                            ("different", "Different incidents"),
                            ("unsure", "Unsure"),
                        ],
                        default="pending",
                        max_length=10,
                    ),
                ),
                ("decided_at", models.DateTimeField(blank=True, editable=False, null=True)),
                ("note", models.TextField(blank=True, help_text="Why, for the history.")),
                (
                    "decided_by",
                    models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        editable=False,
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        related_query_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "incident_a",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        related_query_name="+",
                        to="incidents.incident",
                    ),
                ),
                (
                    "incident_b",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        related_query_name="+",
                        to="incidents.incident",
                    ),
                ),
                (
                    "pgh_context",
                    models.ForeignKey(
                        db_constraint=False,
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="pghistory.context",
                    ),
                ),
                (
                    "pgh_obj",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="events",
                        to="incidents.duplicatepair",
                    ),
                ),
            ],
            options={
                "abstract": False,
            },
        ),
        migrations.AddIndex(
            model_name="duplicatepair",
            index=models.Index(
                condition=models.Q(("decision", "pending")), fields=["-score"], name="duplicate_pair_queue"
            ),
        ),
        migrations.AddIndex(
            model_name="duplicatepair",
            index=models.Index(fields=["incident_b"], name="duplicate_pair_by_b"),
        ),
        migrations.AddConstraint(
            model_name="duplicatepair",
            constraint=models.CheckConstraint(
                condition=models.Q(("incident_a__lt", models.F("incident_b"))), name="duplicate_pair_ordered"
            ),
        ),
        migrations.AddConstraint(
            model_name="duplicatepair",
            constraint=models.UniqueConstraint(fields=("incident_a", "incident_b"), name="duplicate_pair_unique"),
        ),
        migrations.AddConstraint(
            model_name="duplicatepair",
            constraint=models.CheckConstraint(
                condition=models.Q(("score__gte", 0), ("score__lte", 1)), name="duplicate_pair_score_range"
            ),
        ),
        migrations.AddConstraint(
            model_name="duplicatepair",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("decided_at__isnull", True), ("decision", "pending")),
                    models.Q(models.Q(("decision", "pending"), _negated=True), ("decided_at__isnull", False)),
                    _connector="OR",
                ),
                name="duplicate_pair_decided_when_not_pending",
            ),
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="duplicatepair",
            trigger=pgtrigger.compiler.Trigger(
                name="insert_insert",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    condition="WHEN (current_setting('tracker.insert_triggers_off', true) IS DISTINCT FROM 'on')",
                    func='INSERT INTO "incidents_duplicatepairevent" ("decided_at", "decided_by_id", "decision", "id", "incident_a_id", "incident_b_id", "note", "pgh_context_id", "pgh_created_at", "pgh_label", "pgh_obj_id", "score") VALUES (NEW."decided_at", NEW."decided_by_id", NEW."decision", NEW."id", NEW."incident_a_id", NEW."incident_b_id", NEW."note", _pgh_attach_context(), NOW(), \'insert\', NEW."id", NEW."score"); RETURN NULL;',
                    hash="e1900628218f96c09f6be1e3fff86e212f3a65fb",
                    operation="INSERT",
                    pgid="pgtrigger_insert_insert_463e6",
                    table="incidents_duplicatepair",
                    when="AFTER",
                ),
            ),
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="duplicatepair",
            trigger=pgtrigger.compiler.Trigger(
                name="update_update",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    condition="WHEN (OLD.* IS DISTINCT FROM NEW.*)",
                    func='INSERT INTO "incidents_duplicatepairevent" ("decided_at", "decided_by_id", "decision", "id", "incident_a_id", "incident_b_id", "note", "pgh_context_id", "pgh_created_at", "pgh_label", "pgh_obj_id", "score") VALUES (NEW."decided_at", NEW."decided_by_id", NEW."decision", NEW."id", NEW."incident_a_id", NEW."incident_b_id", NEW."note", _pgh_attach_context(), NOW(), \'update\', NEW."id", NEW."score"); RETURN NULL;',
                    hash="e6eecd68c51d4c2b14495d5a74af628ac683442e",
                    operation="UPDATE",
                    pgid="pgtrigger_update_update_59aea",
                    table="incidents_duplicatepair",
                    when="AFTER",
                ),
            ),
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="duplicatepair",
            trigger=pgtrigger.compiler.Trigger(
                name="delete_delete",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    func='INSERT INTO "incidents_duplicatepairevent" ("decided_at", "decided_by_id", "decision", "id", "incident_a_id", "incident_b_id", "note", "pgh_context_id", "pgh_created_at", "pgh_label", "pgh_obj_id", "score") VALUES (OLD."decided_at", OLD."decided_by_id", OLD."decision", OLD."id", OLD."incident_a_id", OLD."incident_b_id", OLD."note", _pgh_attach_context(), NOW(), \'delete\', OLD."id", OLD."score"); RETURN NULL;',
                    hash="725984408ea6fe16e1a3c7775ab9c83b45e16e09",
                    operation="DELETE",
                    pgid="pgtrigger_delete_delete_ec271",
                    table="incidents_duplicatepair",
                    when="AFTER",
                ),
            ),
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="duplicatepairevent",
            trigger=pgtrigger.compiler.Trigger(
                name="append_only",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    func="RAISE EXCEPTION 'pgtrigger: Cannot update or delete rows from % table', TG_TABLE_NAME;",
                    hash="6bd2b7db2d1c0db362165effe5562739c0cc9c7a",
                    operation="UPDATE OR DELETE",
                    pgid="pgtrigger_append_only_b0fef",
                    table="incidents_duplicatepairevent",
                    when="BEFORE",
                ),
            ),
        ),
        migrations.RunSQL(RELEASES_IMMUTABLE, reverse_sql=RELEASES_MUTABLE),
    ]
