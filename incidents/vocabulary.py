"""The controlled vocabulary of incident types analysts start with (they can extend it in the admin)."""

from django.utils.translation import gettext, gettext_noop

# (slug, name, parent slug, description)
INCIDENT_TYPES = [
    (
        "forced-repatriation",
        gettext_noop("Forced repatriation"),
        None,
        "Return of people to a country where they face persecution.",
    ),
    ("deportation", gettext_noop("Deportation"), None, "Expulsion of people from a country by its authorities."),
    (
        "arbitrary-detention",
        gettext_noop("Arbitrary arrest or detention"),
        None,
        "Deprivation of liberty without legal basis.",
    ),
    (
        "enforced-disappearance",
        gettext_noop("Enforced disappearance"),
        None,
        "Detention followed by denial of the person's fate.",
    ),
    (
        "torture",
        gettext_noop("Torture and ill-treatment"),
        None,
        "Severe pain or suffering inflicted by or with consent of officials.",
    ),
    ("execution", gettext_noop("Execution"), None, "Killing by state authorities, judicial or extrajudicial."),
    (
        "extrajudicial-execution",
        gettext_noop("Extrajudicial execution"),
        "execution",
        "Killing without a lawful judicial process.",
    ),
    ("forced-labour", gettext_noop("Forced labour"), None, "Work exacted under menace of penalty."),
    ("sexual-violence", gettext_noop("Sexual violence"), None, "Rape and other sexual violence."),
    (
        "trafficking",
        gettext_noop("Trafficking in persons"),
        None,
        "Recruitment or transport of people by coercion for exploitation.",
    ),
]


def type_name(name: str) -> str:
    """An incident type's name in the reader's language (the public pages' Korean, say): the seed
    types' names are in the catalogs (marked above), so a Korean reader's type facet and each
    incident's type are in Korean; a type analysts added or renamed shows as they wrote it. The
    API, the admin and the exports stay English, as every English name is its own translation."""
    return gettext(name) if name else name


def ensure_incident_types(incident_type_model) -> None:
    """Create the seed types that are missing; never change or remove what analysts edited.

    Takes the model class so the data migration can pass its historical model; it also runs after
    every migrate or flush (post_migrate), so a database emptied by `flush` gets its vocabulary back.
    """
    created = {}
    for slug, name, parent_slug, description in INCIDENT_TYPES:
        created[slug], _ = incident_type_model.objects.get_or_create(
            slug=slug,
            defaults={"name": name, "description": description, "parent": created.get(parent_slug)},
        )
