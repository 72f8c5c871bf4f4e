"""The controlled vocabulary of incident types analysts start with (they can extend it in the admin)."""

# (slug, name, parent slug, description)
INCIDENT_TYPES = [
    ("forced-repatriation", "Forced repatriation", None, "Return of people to a country where they face persecution."),
    ("deportation", "Deportation", None, "Expulsion of people from a country by its authorities."),
    ("arbitrary-detention", "Arbitrary arrest or detention", None, "Deprivation of liberty without legal basis."),
    ("enforced-disappearance", "Enforced disappearance", None, "Detention followed by denial of the person's fate."),
    (
        "torture",
        "Torture and ill-treatment",
        None,
        "Severe pain or suffering inflicted by or with consent of officials.",
    ),
    ("execution", "Execution", None, "Killing by state authorities, judicial or extrajudicial."),
    ("extrajudicial-execution", "Extrajudicial execution", "execution", "Killing without a lawful judicial process."),
    ("forced-labour", "Forced labour", None, "Work exacted under menace of penalty."),
    ("sexual-violence", "Sexual violence", None, "Rape and other sexual violence."),
    ("trafficking", "Trafficking in persons", None, "Recruitment or transport of people by coercion for exploitation."),
]


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
