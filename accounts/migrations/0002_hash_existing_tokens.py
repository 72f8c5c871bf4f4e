"""Tokens made before hashing (DRF's authtoken kept them in plaintext) keep working: each becomes
an ApiToken holding only the SHA-256 of the same key, expiring 90 days after this migration; then
the plaintext table is dropped. Raw SQL: rest_framework.authtoken is no longer installed, so its
model cannot be loaded, and a fresh database has no such table."""

from django.db import migrations

HASH_AND_DROP = """
DO $$
BEGIN
    IF to_regclass('authtoken_token') IS NOT NULL THEN
        INSERT INTO accounts_apitoken (user_id, name, digest, hint, created_at, last_used_at, expires_at)
        SELECT user_id, 'Token made before hashing', encode(sha256(convert_to(key, 'UTF8')), 'hex'),
               left(key, 8), created, NULL, greatest(now(), created) + interval '90 days'
        FROM authtoken_token;
        DROP TABLE authtoken_token;
    END IF;
END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_api_tokens")]

    operations = [migrations.RunSQL(HASH_AND_DROP, reverse_sql=migrations.RunSQL.noop)]
