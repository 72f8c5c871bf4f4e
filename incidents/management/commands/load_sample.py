from django.core.management import call_command
from django.core.management.base import BaseCommand

from incidents.models import Incident, Organization, Place, Source

# The records of the sample (fixtures/sample.json) that analysts edit, and that loading it again
# would overwrite by their ids.
SAMPLE_RECORDS = (Incident, Source, Organization, Place)


class Command(BaseCommand):
    help = (
        "Load the sample data (fixtures/sample.json) into a database that holds no incident, source, "
        "organization or place yet; otherwise load nothing and say so. `make run` runs it at every start."
    )

    def handle(self, *args, **options):
        # `loaddata sample` writes each record by its id: at every `make run` it put the sample's
        # incidents back as the fixture has them, undoing the edits made since and turning their
        # versions back to 1 (a stale If-Match matched again), and it overwrote whatever other
        # records held those ids (demo data's first incidents).
        if any(model._base_manager.exists() for model in SAMPLE_RECORDS):
            self.stdout.write(
                "The database already holds records: the sample data was not loaded again (it would overwrite "
                "them by id; `python manage.py loaddata sample` loads it all the same)."
            )
            return
        call_command("loaddata", "sample", stdout=self.stdout)
