//! [`ReadCursors`] and unread counts on Postgres.

use super::*;

/// A moved cursor and the move's number.
#[derive(sqlx::FromRow)]
struct MovedRow {
    last_read_message_id: Option<Uuid>,
    last_read_at: Option<DateTime<Utc>>,
    last_seq: i64,
}

#[async_trait]
impl ReadCursors for PostgresStore {
    async fn advance_read_cursor(
        &self,
        conversation: ConversationId,
        user: &UserId,
        to: MessageId,
        now: DateTime<Utc>,
    ) -> Result<CursorMove, StoreError> {
        // When two of these race on one row, the second waits for the first
        // and re-evaluates the WHERE against the committed cursor, so the
        // cursor can only ever grow.
        // The move, its number and its log entry in one statement.
        let moved: Option<MovedRow> = sqlx::query_as(
            "WITH moved AS ( \
                UPDATE conversation_participants \
                SET last_read_message_id = $3, last_read_at = $4, \
                    engaged_at = COALESCE(engaged_at, $4) \
                WHERE conversation_id = $1 AND user_id = $2 \
                  AND (last_read_message_id IS NULL OR last_read_message_id < $3) \
                RETURNING last_read_message_id, last_read_at \
             ), bumped AS ( \
                UPDATE conversations SET last_seq = last_seq + 1 \
                WHERE id = $1 AND EXISTS (SELECT 1 FROM moved) RETURNING last_seq \
             ), logged AS ( \
                INSERT INTO conversation_events (conversation_id, seq, kind, actor_id, message_id, at) \
                SELECT $1, last_seq, 'read', $2, $3, $4 FROM bumped \
             ) \
             SELECT m.last_read_message_id, m.last_read_at, b.last_seq FROM moved m, bumped b",
        )
        .bind(conversation.as_uuid())
        .bind(user.as_str())
        .bind(to.as_uuid())
        .bind(millis(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("advance_read_cursor", e))?;
        match moved {
            Some(row) => Ok(CursorMove {
                seq: Some(rows::seq("advance_read_cursor", row.last_seq)?),
                cursor: CursorRow {
                    last_read_message_id: row.last_read_message_id,
                    last_read_at: row.last_read_at,
                }
                .try_into()?,
                moved: true,
            }),
            None => Ok(CursorMove {
                cursor: self.read_cursor(conversation, user).await?,
                moved: false,
                seq: None,
            }),
        }
    }

    async fn read_cursor(
        &self,
        conversation: ConversationId,
        user: &UserId,
    ) -> Result<ReadCursor, StoreError> {
        let row: Option<CursorRow> = sqlx::query_as(
            "SELECT last_read_message_id, last_read_at FROM conversation_participants \
             WHERE conversation_id = $1 AND user_id = $2",
        )
        .bind(conversation.as_uuid())
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
        let rows: Vec<(Uuid, i64)> = sqlx::query_as(
            "SELECT p.conversation_id, count(*) \
             FROM conversation_participants p \
             JOIN messages m ON m.conversation_id = p.conversation_id \
               AND m.deleted_at IS NULL AND m.sender_id <> p.user_id \
               AND (p.last_read_message_id IS NULL OR m.id > p.last_read_message_id) \
             WHERE p.user_id = $1 \
             GROUP BY p.conversation_id",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        rows.into_iter()
            .map(|(id, n)| Ok((ConversationId::from_uuid(id), count(OP, n)?)))
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
        let rows: Vec<(String, Uuid, i64)> = sqlx::query_as(
            "SELECT p.user_id, p.conversation_id, count(*) \
             FROM conversation_participants p \
             JOIN messages m ON m.conversation_id = p.conversation_id \
               AND m.deleted_at IS NULL AND m.sender_id <> p.user_id \
               AND (p.last_read_message_id IS NULL OR m.id > p.last_read_message_id) \
             WHERE p.user_id = ANY($1) \
             GROUP BY p.user_id, p.conversation_id",
        )
        .bind(&names)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        let mut counts: HashMap<UserId, HashMap<ConversationId, u64>> = HashMap::new();
        for (user, conversation, n) in rows {
            counts
                .entry(user_id(OP, &user)?)
                .or_default()
                .insert(ConversationId::from_uuid(conversation), count(OP, n)?);
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
             WHERE p.conversation_id = $1 \
             GROUP BY p.user_id",
        )
        .bind(conversation.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        rows.iter()
            .map(|(user, n)| Ok((user_id(OP, user)?, count(OP, *n)?)))
            .collect()
    }
}
