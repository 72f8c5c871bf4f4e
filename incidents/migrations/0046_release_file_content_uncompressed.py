from django.db import migrations

# A release file is downloaded a slice at a time (`releases.release_file_chunks`). PostgreSQL reads a
# slice of an uncompressed (EXTERNAL) value from that slice's own pages; a compressed one is inflated
# from its start for every slice, so a 250 MB file in 1 MB slices would inflate some 30 GB. The
# files already kept are written again, byte for byte, to be stored the new way (the column's
# storage applies to values written after it changes); the trigger that keeps releases immutable
# is set aside for that statement alone, and its CHECK constraints verify the checksums again.
FORWARD = """
ALTER TABLE incidents_releasefile ALTER COLUMN content SET STORAGE EXTERNAL;
ALTER TABLE incidents_releasefile DISABLE TRIGGER release_file_immutable;
UPDATE incidents_releasefile SET content = content || ''::bytea;
ALTER TABLE incidents_releasefile ENABLE TRIGGER release_file_immutable;
"""

BACKWARD = "ALTER TABLE incidents_releasefile ALTER COLUMN content SET STORAGE EXTENDED;"


class Migration(migrations.Migration):
    dependencies = [("incidents", "0045_incident_public_by_people")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
