//! [`ReadCursors`] and unread counts on SQLite.

use super::*;

#[async_trait]
impl ReadCursors for SqliteStore {
    async fn advance_read_cursor(
        &self,
        conversation: ConversationId,
        user: &UserId,
        to: MessageId,
        now: DateTime<Utc>,
    ) -> Result<CursorMove, StoreError> {
        const OP: &str = "advance_read_cursor";
        let err = |e| StoreError::from_sqlx(OP, e);
        // Under the write lock from its start: a concurrent advance is
        // either fully before or fully after it.
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(err)?;
        let moved: Option<CursorRow> = sqlx::query_as(
            "UPDATE conversation_participants \
             SET last_read_message_id = ?3, last_read_at = ?4, \
                 engaged_at = COALESCE(engaged_at, ?4) \
             WHERE conversation_id = ?1 AND user_id = ?2 \
               AND (last_read_message_id IS NULL OR last_read_message_id < ?3) \
             RETURNING last_read_message_id, last_read_at",
        )
        .bind(text(conversation.as_uuid()))
        .bind(user.as_str())
        .bind(text(to.as_uuid()))
        .bind(now.timestamp_millis())
        .fetch_optional(&mut *tx)
        .await
        .map_err(err)?;
        let Some(row) = moved else {
            drop(tx);
            return Ok(CursorMove {
                cursor: self.read_cursor(conversation, user).await?,
                moved: false,
                seq: None,
            });
        };
        let conversation_text = text(conversation.as_uuid());
        let seq = log_next(&mut tx, OP, &conversation_text).await?;
        sqlx::query(
            "INSERT INTO conversation_events (conversation_id, seq, kind, actor_id, message_id, at) \
             VALUES (?1, ?2, 'read', ?3, ?4, ?5)",
        )
        .bind(&conversation_text)
        .bind(rows::stored_seq(seq))
        .bind(user.as_str())
        .bind(text(to.as_uuid()))
        .bind(now.timestamp_millis())
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(CursorMove {
            cursor: row.try_into()?,
            moved: true,
            seq: Some(seq),
        })
    }

    async fn read_cursor(
        &self,
        conversation: ConversationId,
        user: &UserId,
    ) -> Result<ReadCursor, StoreError> {
        let row: Option<CursorRow> = sqlx::query_as(
            "SELECT last_read_message_id, last_read_at FROM conversation_participants \
             WHERE conversation_id = ?1 AND user_id = ?2",
        )
        .bind(text(conversation.as_uuid()))
        .bind(user.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("read_cursor", e))?;
        match row {
            Some(row) => row.try_into(),
            None => Ok(ReadCursor {
                message_id: None,
                read_at: None,
            }),
        }
    }

    async fn unread_counts(
        &self,
        user: &UserId,
    ) -> Result<HashMap<ConversationId, u64>, StoreError> {
        const OP: &str = "unread_counts";
        // The inner join drops conversations with nothing unread.
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT p.conversation_id, count(*) \
             FROM conversation_participants p \
             JOIN messages m ON m.conversation_id = p.conversation_id \
               AND m.deleted_at IS NULL AND m.sender_id <> p.user_id \
               AND (p.last_read_message_id IS NULL OR m.id > p.last_read_message_id) \
             WHERE p.user_id = ?1 \
             GROUP BY p.conversation_id",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        rows.into_iter()
            .map(|(id, n)| Ok((ConversationId::from_uuid(id.decode(OP)?), count(OP, n)?)))
            .collect()
    }

    async fn unread_counts_of(
        &self,
        users: &[UserId],
    ) -> Result<HashMap<UserId, HashMap<ConversationId, u64>>, StoreError> {
        const OP: &str = "unread_counts_of";
        if users.is_empty() {
            return Ok(HashMap::new());
        }
        let names: Vec<&str> = users.iter().map(UserId::as_str).collect();
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT p.user_id, p.conversation_id, count(*) \
             FROM conversation_participants p \
             JOIN messages m ON m.conversation_id = p.conversation_id \
               AND m.deleted_at IS NULL AND m.sender_id <> p.user_id \
               AND (p.last_read_message_id IS NULL OR m.id > p.last_read_message_id) \
             WHERE p.user_id IN (SELECT value FROM json_each(?1)) \
             GROUP BY p.user_id, p.conversation_id",
        )
        .bind(Json(&names))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        let mut counts: HashMap<UserId, HashMap<ConversationId, u64>> = HashMap::new();
        for (user, conversation, n) in rows {
            counts.entry(user_id(OP, &user)?).or_default().insert(
                ConversationId::from_uuid(conversation.decode(OP)?),
                count(OP, n)?,
            );
        }
        Ok(counts)
    }

    async fn unread_in_conversation(
        &self,
        conversation: ConversationId,
    ) -> Result<Vec<(UserId, u64)>, StoreError> {
        const OP: &str = "unread_in_conversation";
        // The left join keeps participants with nothing unread (count 0).
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT p.user_id, count(m.id) \
             FROM conversation_participants p \
             LEFT JOIN messages m ON m.conversation_id = p.conversation_id \
               AND m.deleted_at IS NULL AND m.sender_id <> p.user_id \
               AND (p.last_read_message_id IS NULL OR m.id > p.last_read_message_id) \
             WHERE p.conversation_id = ?1 \
             GROUP BY p.user_id",
        )
        .bind(text(conversation.as_uuid()))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        rows.iter()
            .map(|(user, n)| Ok((user_id(OP, user)?, count(OP, *n)?)))
            .collect()
    }
}
