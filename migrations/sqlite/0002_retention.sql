-- Retention (issue #14): soft-deleted messages whose content is still
-- there, for the purge (see the Postgres migration). The query's condition
-- repeats this one term for term, as SQLite needs to use a partial index.
CREATE INDEX messages_purgeable_idx ON messages (deleted_at)
    WHERE deleted_at IS NOT NULL AND (content <> '' OR attachments <> '[]');
