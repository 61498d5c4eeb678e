//! [`Retention`] on Postgres: bounded batches under an advisory lock.

use super::*;
use crate::store::HeldLock;

/// The key of the retention job's advisory lock: a constant no other code
/// takes on this database ("parloir" and 1 in ASCII; sqlx's migrator
/// derives its own key from the database name).
const RETENTION_LOCK_KEY: i64 = 0x7061_726c_6f69_7201;

/// Offline notifications settled for good before `$1` (what the partial
/// index `notifications_settled_idx` holds).
macro_rules! settled_notification {
    () => {
        "state IN ('sent', 'cancelled', 'dead') AND updated_at < $1"
    };
}

/// Conversations archival takes: not archived, no activity since `$1`.
macro_rules! idle_conversation {
    () => {
        "archived_at IS NULL AND COALESCE(last_message_at, created_at) < $1"
    };
}

/// A message whose content and attachments were not erased yet.
macro_rules! unpurged {
    () => {
        "(content <> '' OR attachments <> '[]'::jsonb)"
    };
}

/// Messages the purge erases: soft-deleted before `$1`, content still there.
/// The terms of the partial index `messages_purgeable_idx`.
macro_rules! purgeable_message {
    () => {
        concat!(
            "deleted_at IS NOT NULL AND deleted_at < $1 AND ",
            unpurged!()
        )
    };
}

/// Messages deletion takes: sent before `$1`, the first id of that instant
/// (UUIDv7 ids are ordered by send time: `MessageId::first_sent_at`).
macro_rules! old_message {
    () => {
        "id < $1"
    };
}

/// The retention lock as held: a session lock on a connection of its own.
/// Dropping it closes the connection, and the server releases the lock
/// with the session.
struct AdvisoryLock {
    connection: PgConnection,
}

#[async_trait]
impl HeldLock for AdvisoryLock {
    fn describe(&self) -> &'static str {
        "postgres advisory lock"
    }

    /// Unlocks and closes the connection, waiting for the server to confirm
    /// the unlock (a close alone is not waited for).
    async fn release(mut self: Box<Self>) -> Result<(), StoreError> {
        const OP: &str = "release_retention_lock";
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(RETENTION_LOCK_KEY)
            .execute(&mut self.connection)
            .await
            .map_err(|e| StoreError::from_sqlx(OP, e))?;
        self.connection
            .close()
            .await
            .map_err(|e| StoreError::from_sqlx(OP, e))
    }
}

/// The count of one retention condition (`$1` = `cutoff`).
async fn count_where<T>(pool: &PgPool, sql: &'static str, cutoff: T) -> Result<u64, StoreError>
where
    T: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send,
{
    const OP: &str = "count_retention";
    let n: i64 = sqlx::query_scalar(sql)
        .bind(cutoff)
        .fetch_one(pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
    count(OP, n)
}

#[async_trait]
impl Retention for PostgresStore {
    async fn try_lock_retention(&self) -> Result<Option<RetentionLease>, StoreError> {
        const OP: &str = "try_lock_retention";
        let err = |e| StoreError::from_sqlx(OP, e);
        // Not a pooled connection: a session lock left on one would outlive
        // the run (the pool hands the connection to the next caller), and
        // a pooled connection may be reset or closed by the pool at will.
        let options = self.pool.connect_options();
        let connect = PgConnection::connect_with(&options);
        let mut connection =
            match tokio::time::timeout(self.pool.options().get_acquire_timeout(), connect).await {
                Ok(connected) => connected.map_err(err)?,
                Err(elapsed) => return Err(StoreError::timed_out(OP, elapsed)),
            };
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(RETENTION_LOCK_KEY)
            .fetch_one(&mut connection)
            .await
            .map_err(err)?;
        if !locked {
            connection.close().await.map_err(err)?;
            return Ok(None);
        }
        Ok(Some(RetentionLease::holding(AdvisoryLock { connection })))
    }

    async fn archive_idle_conversations(
        &self,
        cutoffs: &RetentionCutoffs,
        after: Option<ConversationId>,
        limit: u32,
    ) -> Result<ArchiveBatch, StoreError> {
        const OP: &str = "archive_idle_conversations";
        // Conversations are visited in id order from `after` (the primary
        // key), so a run reads each row once however many batches it takes.
        // The batch is locked in id order, the order a group commit locks
        // the conversations it bumps, so the two cannot deadlock; a row
        // that a send changed meanwhile is re-checked against the condition
        // (and left out) before it is locked. The UPDATE re-checks too.
        let (visited, last, archived): (i64, Option<Uuid>, i64) = sqlx::query_as(concat!(
            "WITH batch AS ( \
                SELECT id FROM conversations WHERE id > $3 AND ",
            idle_conversation!(),
            " ORDER BY id LIMIT $4 FOR NO KEY UPDATE \
             ), archived AS ( \
                UPDATE conversations SET archived_at = $2 \
                WHERE id = ANY (ARRAY(SELECT id FROM batch)) AND ",
            idle_conversation!(),
            " RETURNING id \
             ) \
             SELECT (SELECT count(*) FROM batch), \
                    (SELECT id FROM batch ORDER BY id DESC LIMIT 1), \
                    (SELECT count(*) FROM archived)"
        ))
        .bind(cutoffs.archive_idle_before)
        .bind(millis(cutoffs.now))
        .bind(after.map_or(Uuid::nil(), |c| c.as_uuid()))
        .bind(i64::from(limit))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        Ok(ArchiveBatch {
            archived: count(OP, archived)?,
            // A full batch may have more after it; a short one reached the end.
            next: last
                .filter(|_| visited >= i64::from(limit))
                .map(ConversationId::from_uuid),
        })
    }

    async fn purge_deleted_messages(
        &self,
        cutoffs: &RetentionCutoffs,
        limit: u32,
    ) -> Result<u64, StoreError> {
        // Purged rows leave the condition (and the partial index), so each
        // batch starts from the oldest deletion still waiting. `= ANY
        // (ARRAY(...))` makes the outer statement look its rows up by
        // primary key, whatever the planner thinks of the subquery's size
        // (an `IN` may be planned as a join that scans every qualifying row
        // at each batch); the same in the two other statements. Its
        // re-check is only "not erased yet": `deleted_at` never changes
        // once set (and with it the planner would scan the partial index).
        let done = sqlx::query(concat!(
            "UPDATE messages SET content = '', attachments = '[]'::jsonb \
             WHERE id = ANY (ARRAY(SELECT id FROM messages WHERE ",
            purgeable_message!(),
            " ORDER BY deleted_at LIMIT $2)) AND ",
            unpurged!()
        ))
        .bind(cutoffs.purge_deleted_before)
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
            "DELETE FROM notifications WHERE id = ANY (ARRAY(SELECT id FROM notifications WHERE ",
            settled_notification!(),
            " ORDER BY updated_at LIMIT $2))"
        ))
        .bind(cutoffs.forget_notifications_before)
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
        // Read cursors on a deleted message become NULL (`ON DELETE SET
        // NULL`). That keeps unread counts exact: what is deleted is every
        // message with an id below `first`, so every message left in the
        // conversation is newer than the cursor's message was, and a NULL
        // cursor counts all of them, as the old cursor did.
        // The conversation log goes with them (issue #23): each
        // conversation's floor rises to the highest number deleted, and its
        // other entries up to there go too; a replay from below the floor
        // answers `recovered: false`.
        let first = MessageId::first_sent_at(before);
        let deleted: i64 = sqlx::query_scalar(concat!(
            "WITH gone AS ( \
                DELETE FROM messages WHERE id = ANY (ARRAY(SELECT id FROM messages WHERE ",
            old_message!(),
            " ORDER BY id LIMIT $2)) AND ",
            old_message!(),
            " RETURNING conversation_id, seq \
             ), floors AS ( \
                SELECT conversation_id, max(seq) AS upto FROM gone GROUP BY conversation_id \
             ), raised AS ( \
                UPDATE conversations c SET log_floor = GREATEST(c.log_floor, f.upto) \
                FROM floors f WHERE c.id = f.conversation_id \
             ), forgotten AS ( \
                DELETE FROM conversation_events e USING floors f \
                WHERE e.conversation_id = f.conversation_id AND e.seq <= f.upto \
             ) \
             SELECT count(*) FROM gone"
        ))
        .bind(first.as_uuid())
        .bind(i64::from(limit))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("delete_old_messages", e))?;
        rows::count("delete_old_messages", deleted)
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
            cutoffs.archive_idle_before,
        )
        .await?;
        let purged = count_where(
            &self.pool,
            concat!("SELECT count(*) FROM messages WHERE ", purgeable_message!()),
            cutoffs.purge_deleted_before,
        )
        .await?;
        let deleted = match cutoffs.delete_sent_before {
            None => 0,
            Some(before) => {
                count_where(
                    &self.pool,
                    concat!("SELECT count(*) FROM messages WHERE ", old_message!()),
                    MessageId::first_sent_at(before).as_uuid(),
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
            cutoffs.forget_notifications_before,
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
