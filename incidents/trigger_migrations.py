"""django-pgtrigger and the migrations: its operations without rendering models again at each
trigger, and its install after a migrate only on a database the code's migrations have reached.

`AddTrigger` and `RemoveTrigger` change a model state's `triggers` option, then render that model
and every model related to it again (`ProjectState.reload_model`), as Django's own index and
constraint operations do. Django's need it: a later operation's schema editor reads a rendered
model's `Meta.indexes`. Nothing reads a rendered model's triggers during a migration: each
operation carries its trigger compiled (`pgtrigger.compiler.Trigger`), `RemoveTrigger` finds the
one it drops in the model's *state*, and pgtrigger installs today's triggers after a migrate from
the real models, not the migration's. The rendering was half the time of every migrate here: 201
trigger operations, most of them on the incident and claim models, to which 20-odd models relate.
A migrate back to 0040 and forward again took 55 s, 29 s without it; a test of a migration's
conversion does that, as does every new database (`make run`, each test worker's).

Hand-written because pgtrigger offers no setting for it. It wraps pgtrigger's own operations, so
what they write into the state stays theirs (`tests/test_trigger_migrations.py` checks both against
the version pinned in requirements.txt).

pgtrigger installs every trigger of today's models after each migrate (`PGTRIGGER_INSTALL_ON_MIGRATE`,
for the triggers no migration holds: those on Response.incidents' own table). After `migrate
incidents NNNN` going back a version, the tables are NNNN's and today's triggers name columns they
no longer have: the migrate ended with `column old.… does not exist`, after the migrations had put
back NNNN's own triggers. `install_triggers_once_migrated` installs them only when no migration of
the code is left to apply, and otherwise says why it did not.
"""

from contextlib import contextmanager

from django.db import connections
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.state import ProjectState
from pgtrigger import features, installation
from pgtrigger.migrations import AddTrigger, RemoveTrigger


@contextmanager
def _models_kept_as_rendered(state: ProjectState):
    """`state` with `reload_model` doing nothing: the models rendered before stay as they are."""
    state.reload_model = lambda *args, **kwargs: None
    try:
        yield
    finally:
        del state.reload_model


def _without_rendering(state_forwards):
    def state_forwards_without_rendering(self, app_label: str, state: ProjectState) -> None:
        with _models_kept_as_rendered(state):
            state_forwards(self, app_label, state)

    state_forwards_without_rendering.renders_again = state_forwards
    return state_forwards_without_rendering


def render_no_model_at_each_trigger() -> None:
    """Make pgtrigger's operations change the model states alone (once, from `IncidentsConfig.ready`)."""
    for operation in (AddTrigger, RemoveTrigger):
        if not hasattr(operation.state_forwards, "renders_again"):
            operation.state_forwards = _without_rendering(operation.state_forwards)


def install_triggers_once_migrated(sender, using, verbosity=1, stdout=None, **kwargs) -> None:
    """pgtrigger's install after a migrate (`pgtrigger.apps.install_on_migrate`, which it replaces),
    when the database holds every migration of the code: a database migrated back keeps the
    triggers its migrations left, which are its version's, for that version's own `migrate` to
    install the rest."""
    if not features.install_on_migrate():
        return
    executor = MigrationExecutor(connections[using])
    left = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if not left:
        installation.install(database=using)
    elif verbosity and stdout is not None:
        stdout.write(
            f"Triggers left as the migrations made them: the database holds {_where(executor, left)}. If you went "
            "back a version, deploy its code and run its own `migrate`, which installs its triggers; otherwise "
            "run `migrate` to the end."
        )


def _where(executor: MigrationExecutor, left) -> str:
    """Where each app the code is ahead of stands: "incidents up to 0100_…, where this code goes on to 0123_…"."""
    applied = executor.loader.applied_migrations
    leaves = dict(executor.loader.graph.leaf_nodes())
    places = []
    for app_label in sorted({migration.app_label for migration, _ in left}):
        # Numbered names sort in the order they were made.
        reached = max((name for label, name in applied if label == app_label), default=None)
        places.append(
            f"{app_label} up to {reached or 'none of its migrations'}, where this code goes on to {leaves[app_label]}"
        )
    return "; ".join(places)
