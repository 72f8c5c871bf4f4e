"""An edit of a record while it is hidden from an audience moves none of the versions that audience
is told: an incident or a source edited while confidential (or, for the public, an incident edited
while a draft) was told, once shown, as one version more per edit, so its ETag and `version` said
how many edits were made while they could not see it, and its peers, made public untouched, said
none. The keepers `record_disclosed_keep` and `record_public_keep` now leave such an edit out; the
change that shows the record still counts, once. Responses, whose sight follows their links, keep
what they had. Versions told before stay as they are (a version never goes back)."""

import importlib

from django.db import migrations

_PUBLIC_VERSIONS = importlib.import_module("incidents.migrations.0098_public_versions")
_CREATED_PER_AUDIENCE = importlib.import_module("incidents.migrations.0104_created_per_audience")

_BOOKKEEPING = _PUBLIC_VERSIONS._BOOKKEEPING + _CREATED_PER_AUDIENCE._CREATED
KEEP_SQL = _PUBLIC_VERSIONS.keep_function("disclosed", _BOOKKEEPING, hidden_kept=True) + _PUBLIC_VERSIONS.keep_function(
    "public", _BOOKKEEPING, hidden_kept=True
)


class Migration(migrations.Migration):
    dependencies = [("incidents", "0109_type_slugs_start_plain")]

    operations = [migrations.RunSQL(KEEP_SQL, reverse_sql=_CREATED_PER_AUDIENCE.KEEP_SQL)]
