//! [`MessageInserts`] (the batched write path of sends) and [`Messages`] on SQLite.

use super::*;

#[async_trait]
impl MessageInserts for SqliteStore {
    async fn insert_message(
        &self,
        id: MessageId,
        sender: &UserId,
        message: &NewMessage,
        now: DateTime<Utc>,
    ) -> Result<(Message, Inserted), StoreError> {
        insert_alone(self, MessageInsert::new(id, sender, message, now)).await
    }

    async fn insert_messages(
        &self,
        batch: &[MessageInsert],
    ) -> Result<Vec<InsertOutcome>, StoreError> {
        const OP: &str = "insert_messages";
        let err = |e| StoreError::from_sqlx(OP, e);
        // One write transaction, so one WAL commit for the whole batch.
        // Writers are serialized, so a conflicting row is committed (or
        // earlier in this transaction) and visible to the lookup.
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(err)?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for m in batch {
            let now = m.now.timestamp_millis();
            let conversation_id = text(m.message.conversation_id.as_uuid());
            let client_message_id = m
                .message
                .client_message_id
                .as_ref()
                .map(ClientMessageId::as_str);
            // Writers are serialized, so the next number is read and taken
            // in one transaction nobody else writes in: a message takes the
            // next number of its conversation's log (PROTOCOL.md §8), and a
            // repeat takes none.
            let row: Option<MessageRow> = sqlx::query_as(concat!(
                "INSERT INTO messages \
                    (id, conversation_id, sender_id, content, attachments, client_message_id, \
                     created_at, seq) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, \
                         (SELECT last_seq + 1 FROM conversations WHERE id = ?2)) \
                 ON CONFLICT (sender_id, client_message_id) DO NOTHING \
                 RETURNING ",
                message_columns!()
            ))
            .bind(text(m.id.as_uuid()))
            .bind(&conversation_id)
            .bind(m.sender.as_str())
            .bind(m.message.content.as_str())
            .bind(Json(&m.message.attachments))
            .bind(client_message_id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?;

            if let Some(row) = row {
                // Monotonic even if the clock steps back (SQLite's two-argument
                // MAX is NULL when either side is, hence the COALESCE); a new
                // message un-archives its conversation (retention, issue #14).
                sqlx::query(
                    "UPDATE conversations \
                     SET last_message_at = MAX(COALESCE(last_message_at, ?2), ?2), \
                         archived_at = NULL, last_seq = last_seq + 1 WHERE id = ?1",
                )
                .bind(&conversation_id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
                // Sending is taking part (presence by consent).
                sqlx::query(
                    "UPDATE conversation_participants SET engaged_at = ?3 \
                     WHERE conversation_id = ?1 AND user_id = ?2 AND engaged_at IS NULL",
                )
                .bind(&conversation_id)
                .bind(m.sender.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
                if self.outbox {
                    sqlx::query(
                        "INSERT INTO notification_outbox (message_id, conversation_id, sender_id) \
                         VALUES (?1, ?2, ?3)",
                    )
                    .bind(&row.id)
                    .bind(&conversation_id)
                    .bind(m.sender.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                }
                outcomes.push(row.try_into().map(|message| (message, Inserted::New)));
                continue;
            }

            // Only a non-NULL client_message_id can conflict.
            let existing: Option<MessageRow> = sqlx::query_as(concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE sender_id = ?1 AND client_message_id = ?2"
            ))
            .bind(m.sender.as_str())
            .bind(client_message_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?;
            outcomes.push(
                existing
                    .ok_or_else(|| corrupt(OP, "conflicting message not found"))
                    .and_then(Message::try_from)
                    .and_then(|existing| duplicate_of(&existing, m)),
            );
        }
        tx.commit().await.map_err(err)?;
        Ok(outcomes)
    }
}

#[async_trait]
impl Messages for SqliteStore {
    async fn history(
        &self,
        conversation: ConversationId,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        // Absent bounds become the extreme UUIDs, so both bounds are always
        // plain range conditions on the (conversation_id, id) index. No
        // UUIDv7 equals nil or max.
        let before = text(page.before.map_or(Uuid::max(), |m| m.as_uuid()));
        let after = text(page.after.map_or(Uuid::nil(), |m| m.as_uuid()));
        let sql = if page.reads_backwards() {
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE conversation_id = ?1 AND deleted_at IS NULL \
                 AND id < ?2 AND id > ?3 ORDER BY id DESC LIMIT ?4"
            )
        } else {
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE conversation_id = ?1 AND deleted_at IS NULL \
                 AND id < ?2 AND id > ?3 ORDER BY id ASC LIMIT ?4"
            )
        };
        let rows: Vec<MessageRow> = sqlx::query_as(sql)
            .bind(text(conversation.as_uuid()))
            .bind(before)
            .bind(after)
            .bind(i64::from(page.limit) + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| StoreError::from_sqlx("history", e))?;
        let messages = rows
            .into_iter()
            .map(Message::try_from)
            .collect::<Result<_, _>>()?;
        Ok(Page::from_rows(page, messages))
    }

    async fn message(&self, id: MessageId) -> Result<Option<Message>, StoreError> {
        let row: Option<MessageRow> = sqlx::query_as(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE id = ?1 AND deleted_at IS NULL"
        ))
        .bind(text(id.as_uuid()))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("message", e))?;
        row.map(Message::try_from).transpose()
    }

    async fn soft_delete_message(
        &self,
        id: MessageId,
        now: DateTime<Utc>,
    ) -> Result<Option<u64>, StoreError> {
        const OP: &str = "soft_delete_message";
        let err = |e| StoreError::from_sqlx(OP, e);
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(err)?;
        let deleted: Option<(String, String)> = sqlx::query_as(
            "UPDATE messages SET deleted_at = ?2 WHERE id = ?1 AND deleted_at IS NULL \
             RETURNING conversation_id, sender_id",
        )
        .bind(text(id.as_uuid()))
        .bind(now.timestamp_millis())
        .fetch_optional(&mut *tx)
        .await
        .map_err(err)?;
        let Some((conversation, sender)) = deleted else {
            return Ok(None);
        };
        let seq = log_next(&mut tx, OP, &conversation).await?;
        sqlx::query(
            "INSERT INTO conversation_events (conversation_id, seq, kind, actor_id, message_id, at) \
             VALUES (?1, ?2, 'deleted', ?3, ?4, ?5)",
        )
        .bind(&conversation)
        .bind(rows::stored_seq(seq))
        .bind(&sender)
        .bind(text(id.as_uuid()))
        .bind(now.timestamp_millis())
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(Some(seq))
    }

    async fn latest_message_id(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<MessageId>, StoreError> {
        const OP: &str = "latest_message_id";
        let id: Option<String> = sqlx::query_scalar(
            "SELECT id FROM messages WHERE conversation_id = ?1 AND deleted_at IS NULL \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(text(conversation.as_uuid()))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        id.map(|id| id.decode(OP).map(MessageId::from_uuid))
            .transpose()
    }
}
