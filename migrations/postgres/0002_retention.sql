-- Retention (issue #14). The purge looks for soft-deleted messages whose
-- content is still there. This partial index holds only those rows: a row
-- enters it when it is soft-deleted and leaves it when it is purged, and a
-- send never writes it. (Archival walks conversations by primary key and
-- the deletion of old messages reads the primary key: no index for them.)
CREATE INDEX messages_purgeable_idx ON messages (deleted_at)
    WHERE deleted_at IS NOT NULL AND (content <> '' OR attachments <> '[]'::jsonb);
