"""django-pgtrigger's migration operations, without rendering models again at each trigger.

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
"""

from contextlib import contextmanager

from django.db.migrations.state import ProjectState
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
