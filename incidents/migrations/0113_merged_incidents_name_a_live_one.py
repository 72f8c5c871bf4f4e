"""A merged incident's `merged_into` names a live incident (`incidents.merges._followers_moved`):
an incident merged into one that was merged since (A into B, then B into C) is pointed at the one
it lives on in (C), a new version of it as a merge makes, and noted among the followers of the
later merge (B into C), whose undo points it back. Merges of merges are followed from the first:
each follower ends at the live incident, noted on every merge it followed on the way."""

import importlib

from django.db import migrations
from django.db.models import F
from django.db.models.functions import Now

_0086 = importlib.import_module("incidents.migrations.0086_searched_texts_bounded")


def point_at_live_incidents(apps, schema_editor):
    Incident = apps.get_model("incidents", "Incident")
    IncidentMerge = apps.get_model("incidents", "IncidentMerge")
    standing = {merge.merged_id: merge for merge in IncidentMerge.objects.filter(undone_at__isnull=True)}
    merged_into = dict(Incident.objects.filter(merged_into__isnull=False).values_list("pk", "merged_into"))
    changed = set()
    for follower, target in merged_into.items():
        while target in merged_into and target in standing:
            # The merge of `target` moved it on: `follower` follows it there.
            merge = standing[target]
            merge.moved.setdefault("followers", [])
            if follower not in merge.moved["followers"]:
                merge.moved["followers"].append(follower)
            changed.add(merge.pk)
            target = merged_into[target]
        if target != merged_into[follower]:
            Incident.objects.filter(pk=follower).update(merged_into=target, version=F("version") + 1, updated_at=Now())
    for merge in standing.values():
        if merge.pk in changed:
            merge.moved["followers"].sort()
            merge.save(update_fields=["moved"])


class Migration(migrations.Migration):
    dependencies = [("incidents", "0112_texts_in_normal_form")]

    operations = [
        # Rows stored before migration 0086 may hold a text longer than its bounds, which PostgreSQL
        # holds on every row written (`bounds_set_aside`).
        _0086.bounds_set_aside(),
        migrations.RunPython(point_at_live_incidents, migrations.RunPython.noop),
        _0086.bounds_added_back(),
    ]
