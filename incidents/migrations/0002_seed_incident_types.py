"""The controlled vocabulary of incident types analysts start with (they can extend it in the admin)."""

from django.db import migrations

# (slug, name, parent slug, description)
INCIDENT_TYPES = [
    (
        "forced-repatriation",
        "Forced repatriation",
        None,
        "Return of people to a country where they face persecution (refoulement).",
    ),
    ("deportation", "Deportation", None, "Expulsion of people from a country by its authorities."),
    (
        "arbitrary-detention",
        "Arbitrary arrest or detention",
        None,
        "Deprivation of liberty without legal basis or due process.",
    ),
    (
        "enforced-disappearance",
        "Enforced disappearance",
        None,
        "Detention followed by refusal to disclose the person's fate or whereabouts.",
    ),
    (
        "torture",
        "Torture and ill-treatment",
        None,
        "Severe pain or suffering inflicted by or with the consent of officials.",
    ),
    ("execution", "Execution", None, "Killing by state authorities, judicial or extrajudicial."),
    ("extrajudicial-execution", "Extrajudicial execution", "execution", "Killing without a lawful judicial process."),
    ("forced-labour", "Forced labour", None, "Work exacted under menace of penalty."),
    ("sexual-violence", "Sexual violence", None, "Rape and other sexual violence."),
    ("trafficking", "Trafficking in persons", None, "Recruitment or transport of people by coercion for exploitation."),
]


def seed(apps, schema_editor):
    IncidentType = apps.get_model("incidents", "IncidentType")
    by_slug = {}
    for slug, name, parent_slug, description in INCIDENT_TYPES:
        by_slug[slug], _ = IncidentType.objects.get_or_create(
            slug=slug,
            defaults={"name": name, "description": description, "parent": by_slug.get(parent_slug)},
        )


class Migration(migrations.Migration):
    dependencies = [("incidents", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
