"""The analysts' screens. Each module registers its ModelAdmins with the default admin site.

Rules stay in querysets (what a user may see) and services (how an incident is written); these
classes translate between the admin's forms and those functions.
"""

from incidents.admin import duplicates, evidence, incidents, releases, revisions

__all__ = ["duplicates", "evidence", "incidents", "releases", "revisions"]
