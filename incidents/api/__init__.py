"""The REST API under /api/v1/: thin translation between HTTP and the querysets and services."""
