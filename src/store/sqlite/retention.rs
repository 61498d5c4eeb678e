//! [`Retention`] on SQLite: bounded batches; one node owns the file.

use super::*;

/// Offline notifications settled for good before `?1` (what the partial
/// index `notifications_settled_idx` holds).
macro_rules! settled_notification {
    () => {
        "state IN ('sent', 'cancelled', 'dead') AND updated_at < ?1"
    };
}

/// Conversations archival takes: not archived, no activity since `?1`.
macro_rules! idle_conversation {
    () => {
        "archived_at IS NULL AND COALESCE(last_message_at, created_at) < ?1"
    };
}

/// A message whose content and attachments were not erased yet.
macro_rules! unpurged {
    () => {
        "(content <> '' OR attachments <> '[]')"
    };
}

/// Messages the purge erases: soft-deleted before `?1`, content still there.
/// The terms of the partial index `messages_purgeable_idx`.
macro_rules! purgeable_message {
    () => {
        concat!(
            "deleted_at IS NOT NULL AND deleted_at < ?1 AND ",
            unpurged!()
        )
    };
}

/// Messages deletion takes: sent before `?1`, the first id of that instant.
macro_rules! old_message {
    () => {
        "id < ?1"
    };
}

/// The count of one retention condition (`?1` = `cutoff`).
async fn count_where<T>(pool: &SqlitePool, sql: &'static str, cutoff: T) -> Result<u64, StoreError>
where
    T: for<'q> sqlx::Encode<'q, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite> + Send,
{
    const OP: &str = "count_retention";
    let n: i64 = sqlx::query_scalar(sql)
        .bind(cutoff)
        .fetch_one(pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
    count(OP, n)
}

/// Each statement below is one write: it holds SQLite's write lock from its
/// start, so it reads and changes its batch with no other writer between.
/// The conditions are re-checked in the outer statement anyway, exactly as
/// on Postgres, where that is what keeps concurrent runs from changing a row
/// twice.
#[async_trait]
impl Retention for SqliteStore {
    /// One node owns the file: there is no other node to exclude. (A
    /// `parloir retention` beside the node is safe: see above.)
    async fn try_lock_retention(&self) -> Result<Option<RetentionLease>, StoreError> {
        Ok(Some(RetentionLease::uncontended()))
    }

    async fn archive_idle_conversations(
        &self,
        cutoffs: &RetentionCutoffs,
        after: Option<ConversationId>,
        limit: u32,
    ) -> Result<ArchiveBatch, StoreError> {
        const OP: &str = "archive_idle_conversations";
        // Visited in id order from `after`, so a run reads each row once.
        let archived: Vec<String> = sqlx::query_scalar(concat!(
            "UPDATE conversations SET archived_at = ?2 \
             WHERE id IN (SELECT id FROM conversations WHERE id > ?3 AND ",
            idle_conversation!(),
            " ORDER BY id LIMIT ?4) AND ",
            idle_conversation!(),
            " RETURNING id"
        ))
        .bind(cutoffs.archive_idle_before.timestamp_millis())
        .bind(cutoffs.now.timestamp_millis())
        .bind(text(after.map_or(Uuid::nil(), |c| c.as_uuid())))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        // Under the write lock every row of the batch is archived, so the
        // archived ids are the visited ones; a full batch may have more after it.
        let visited = archived.len();
        let next = match archived.into_iter().max() {
            Some(last) if visited >= limit as usize => {
                Some(ConversationId::from_uuid(last.decode(OP)?))
            }
            _ => None,
        };
        Ok(ArchiveBatch {
            archived: visited as u64,
            next,
        })
    }

    async fn purge_deleted_messages(
        &self,
        cutoffs: &RetentionCutoffs,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(concat!(
            "UPDATE messages SET content = '', attachments = '[]' \
             WHERE id IN (SELECT id FROM messages WHERE ",
            purgeable_message!(),
            " ORDER BY deleted_at LIMIT ?2) AND ",
            unpurged!()
        ))
        .bind(cutoffs.purge_deleted_before.timestamp_millis())
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("purge_deleted_messages", e))?;
        Ok(done.rows_affected())
    }

    async fn forget_settled_notifications(
        &self,
        cutoffs: &RetentionCutoffs,
        limit: u32,
    ) -> Result<u64, StoreError> {
        // A settled notification never changes again: the condition needs
        // no re-check.
        let done = sqlx::query(concat!(
            "DELETE FROM notifications WHERE id IN (SELECT id FROM notifications WHERE ",
            settled_notification!(),
            " ORDER BY updated_at LIMIT ?2)"
        ))
        .bind(cutoffs.forget_notifications_before.timestamp_millis())
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("forget_settled_notifications", e))?;
        Ok(done.rows_affected())
    }

    async fn delete_old_messages(
        &self,
        cutoffs: &RetentionCutoffs,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let Some(before) = cutoffs.delete_sent_before else {
            return Ok(0);
        };
        // As on Postgres, read cursors on a deleted message become NULL
        // (`ON DELETE SET NULL`: the store opens every connection with
        // `foreign_keys` on, as sqlx does by default), and unread counts stay
        // exact because only the oldest ids of each conversation go.
        // The conversation log goes with them, as on Postgres: each
        // conversation's floor rises to the highest number deleted, and its
        // other entries up to there go too.
        const OP: &str = "delete_old_messages";
        let err = |e| StoreError::from_sqlx(OP, e);
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(err)?;
        let gone: Vec<(String, i64)> = sqlx::query_as(concat!(
            "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE ",
            old_message!(),
            " ORDER BY id LIMIT ?2) AND ",
            old_message!(),
            " RETURNING conversation_id, seq"
        ))
        .bind(text(MessageId::first_sent_at(before).as_uuid()))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        let mut floors: HashMap<&str, i64> = HashMap::new();
        for (conversation, seq) in &gone {
            let upto = floors.entry(conversation).or_default();
            *upto = (*upto).max(*seq);
        }
        for (conversation, upto) in floors {
            sqlx::query("UPDATE conversations SET log_floor = MAX(log_floor, ?2) WHERE id = ?1")
                .bind(conversation)
                .bind(upto)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            sqlx::query("DELETE FROM conversation_events WHERE conversation_id = ?1 AND seq <= ?2")
                .bind(conversation)
                .bind(upto)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        Ok(gone.len() as u64)
    }

    async fn count_retention(
        &self,
        cutoffs: &RetentionCutoffs,
    ) -> Result<RetentionCounts, StoreError> {
        let archived = count_where(
            &self.pool,
            concat!(
                "SELECT count(*) FROM conversations WHERE ",
                idle_conversation!()
            ),
            cutoffs.archive_idle_before.timestamp_millis(),
        )
        .await?;
        let purged = count_where(
            &self.pool,
            concat!("SELECT count(*) FROM messages WHERE ", purgeable_message!()),
            cutoffs.purge_deleted_before.timestamp_millis(),
        )
        .await?;
        let deleted = match cutoffs.delete_sent_before {
            None => 0,
            Some(before) => {
                count_where(
                    &self.pool,
                    concat!("SELECT count(*) FROM messages WHERE ", old_message!()),
                    text(MessageId::first_sent_at(before).as_uuid()),
                )
                .await?
            }
        };
        let forgotten = count_where(
            &self.pool,
            concat!(
                "SELECT count(*) FROM notifications WHERE ",
                settled_notification!()
            ),
            cutoffs.forget_notifications_before.timestamp_millis(),
        )
        .await?;
        Ok(RetentionCounts {
            archived,
            purged,
            deleted,
            forgotten,
        })
    }
}
