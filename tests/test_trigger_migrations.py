"""pgtrigger's migration operations change the model states as pgtrigger's own do, without rendering
the models again (`incidents.trigger_migrations`), the migrations still install exactly the
triggers a migrate leaves, and a migrate back a version leaves that version's."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.test import override_settings
from pgtrigger.migrations import AddTrigger, RemoveTrigger

# Back before the triggers of per-audience versions and their syncing (0096-0107) were made.
BEFORE_THE_AUDIENCES_TRIGGERS = "0095_versions_per_audience"

TRIGGERS_INSTALLED = """
    SELECT trigger.tgrelid::regclass::text, trigger.tgname, pg_get_triggerdef(trigger.oid),
           pg_get_functiondef(trigger.tgfoid)
    FROM pg_trigger AS trigger
    WHERE NOT trigger.tgisinternal
    ORDER BY 1, 2
"""


def triggers_installed() -> list[tuple[str, str, str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(TRIGGERS_INSTALLED)
        return cursor.fetchall()


@pytest.fixture(scope="module")
def head_state():
    """The incidents app's state after its last migration, its models rendered, as a migrate has it."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    state = loader.project_state()
    state.apps  # noqa: B018 (rendered, as the executor renders it before it applies an operation)
    return state


def incident_trigger(state):
    return state.models["incidents", "incident"].options["triggers"][0]


@pytest.mark.parametrize("operation", ["add", "remove"])
def test_an_operation_changes_the_model_state_as_pgtriggers_own_and_renders_no_model(head_state, operation):
    trigger = incident_trigger(head_state)
    if operation == "add":
        made = AddTrigger(model_name="incident", trigger=trigger)
        # Added under a name of its own, beside the one it copies.
        made.trigger = type(trigger)(name=f"{trigger.name}_copy", sql=trigger.sql)
    else:
        made = RemoveTrigger(model_name="incident", name=trigger.name)
    theirs, ours = head_state.clone(), head_state.clone()
    rendered = ours.apps.get_model("incidents", "incident")
    rendered_theirs = theirs.apps.get_model("incidents", "incident")

    type(made).state_forwards.renders_again(made, "incidents", theirs)
    made.state_forwards("incidents", ours)

    def names(state):
        return [each.name for each in state.models["incidents", "incident"].options["triggers"]]

    assert names(ours) == names(theirs) != names(head_state)
    assert ours.apps.get_model("incidents", "incident") is rendered
    assert theirs.apps.get_model("incidents", "incident") is not rendered_theirs


@pytest.mark.django_db(transaction=True)
def test_the_migrations_back_and_forth_leave_the_triggers_a_migrate_installs():
    installed = triggers_installed()
    assert len(installed) > 60
    # Back as an operator goes back a version: the new code's `migrate incidents NNNN`. pgtrigger's
    # install of today's triggers on the tables as they were at NNNN ended it with an error.
    said = StringIO()
    call_command("migrate", "incidents", BEFORE_THE_AUDIENCES_TRIGGERS, stdout=said)
    assert (
        f"Triggers left as the migrations made them: the database holds incidents up to "
        f"{BEFORE_THE_AUDIENCES_TRIGGERS}, where this code goes on to "
    ) in said.getvalue()
    assert "deploy its code and run its own `migrate`" in said.getvalue()
    assert triggers_installed() != installed
    # Forward without pgtrigger's installing today's triggers after the migrate: the migrations
    # alone put back each trigger and its function as they were.
    with override_settings(PGTRIGGER_INSTALL_ON_MIGRATE=False):
        call_command("migrate", "incidents", verbosity=0)
    assert triggers_installed() == installed


@pytest.mark.django_db(transaction=True)
def test_a_migrate_to_the_end_installs_the_triggers_no_migration_holds():
    # Response.incidents' own table is Django's; its history triggers come only from pgtrigger's install.
    def response_link_triggers():
        return [
            each
            for each in triggers_installed()
            if each[0] == "incidents_response_incidents" and each[1].startswith("pgtrigger_")
        ]

    assert response_link_triggers()
    with connection.cursor() as cursor:
        for table, name, *_ in response_link_triggers():
            cursor.execute(f"DROP TRIGGER {connection.ops.quote_name(name)} ON {table}")
    assert not response_link_triggers()
    call_command("migrate", verbosity=0)
    assert response_link_triggers()
