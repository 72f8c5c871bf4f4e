"""The analysts' screens. Each module registers its ModelAdmins with the default admin site.

Rules stay in querysets (what a user may see) and services (how an incident is written); these
classes translate between the admin's forms and those functions.
"""

from django.contrib import admin

from incidents.admin import access, duplicates, evidence, incidents, merges, releases, revisions

__all__ = ["access", "duplicates", "evidence", "incidents", "merges", "releases", "revisions"]

# The product's name in every page's header and <title>, rather than "Django administration".
admin.site.site_header = "Incident Tracker"
admin.site.site_title = "Incident Tracker"
admin.site.index_title = "Records"
