"""Every `date_label` says an incident's whole range at its precision, in the public pages' words
(incidents/templatetags/public_pages.py, `dates`): a Day recorded over several days read "Around 3
October 2023" in the API, the CSV and releases, where the pages read "3 October 2023 - 9 October
2023", and Months, Years and Ranges were shortened ("July-September 2021", "2-9 October 2023") where
the pages gave both ends. One rule now, for every precision: the first and the last day, month or
year, with an en dash between them, or one when they read alike.

The stored labels are made again without anyone changing anything: the incidents' generated column
(with the incidents' row triggers off, so that no history event, version or export refresh marks a
change nobody made), the kept export rows, and the history's copies (migration 0055). The history
keeps the label beside the dates it was made from; left in the old words, the next event of each
incident would show its `date_label` changed though its dates had not.
"""

import importlib

from django.db import migrations

# The label of the span in the precision's to_char format: its two ends, or one where the format
# says them alike (a Month of one month, a Year of one year, a Day of one day), as the pages'
# `_span`. One expression, written out in each branch rather than called as a function of its own:
# a call to a function of this schema does not resolve while pg_restore builds the generated column
# (pg_dump empties search_path), and the label's function must stay one expression for PostgreSQL to
# inline it into every insert. IMMUTABLE for the reason migration 0001 gives: English month names
# without the TM prefix follow no locale.
_FORMAT = (
    "(CASE date_precision WHEN 'unknown' THEN 'YYYY' WHEN 'year' THEN 'YYYY' "
    "WHEN 'month' THEN 'FMMonth YYYY' ELSE 'FMDD FMMonth YYYY' END)"
)
_SPAN = (
    f"(CASE WHEN to_char(date_start, {_FORMAT}) = to_char(date_end, {_FORMAT}) THEN to_char(date_start, {_FORMAT}) "
    f"ELSE to_char(date_start, {_FORMAT}) || ' – ' || to_char(date_end, {_FORMAT}) END)"
)
DATE_LABEL_FUNCTION = f"""
CREATE OR REPLACE FUNCTION incident_date_label(date_start date, date_end date, date_precision text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT CASE date_precision
    WHEN 'unknown' THEN 'Date unknown (' || {_SPAN} || ')'
    WHEN 'week' THEN 'Week of ' || {_SPAN}
    ELSE {_SPAN}
END
$$;
"""

# Migration 0001's function, which the reversal restores.
PREVIOUS_DATE_LABEL_FUNCTION = importlib.import_module("incidents.migrations.0001_initial").DATE_LABEL_FUNCTION

# Made again from the function now defined, wherever a stored label differs from it. Setting the
# date to itself makes PostgreSQL compute the generated column again.
REFRESH_LABELS = """
ALTER TABLE incidents_incident DISABLE TRIGGER USER;
UPDATE incidents_incident SET date_start = date_start
WHERE date_label IS DISTINCT FROM incident_date_label(date_start, date_end, date_precision::text);
ALTER TABLE incidents_incident ENABLE TRIGGER USER;

UPDATE incidents_incidentexportrow AS export_row SET date_label = incident.date_label
FROM incidents_incident AS incident
WHERE incident.id = export_row.incident_id AND export_row.date_label IS DISTINCT FROM incident.date_label;

ALTER TABLE incidents_incidentevent DISABLE TRIGGER USER;
UPDATE incidents_incidentevent SET date_label = incident_date_label(date_start, date_end, date_precision::text)
WHERE date_label IS DISTINCT FROM incident_date_label(date_start, date_end, date_precision::text);
ALTER TABLE incidents_incidentevent ENABLE TRIGGER USER;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0071_source_lookalikes"),
    ]

    operations = [
        migrations.RunSQL(
            DATE_LABEL_FUNCTION + REFRESH_LABELS,
            reverse_sql=PREVIOUS_DATE_LABEL_FUNCTION + REFRESH_LABELS,
        ),
    ]
