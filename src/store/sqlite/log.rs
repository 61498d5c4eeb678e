//! [`ConversationLog`] on SQLite: replays read a conversation's messages
//! and its other log entries together, by number.

use super::*;

type LogRow = rows::LogRow<String, i64, String>;

#[async_trait]
impl ConversationLog for SqliteStore {
    async fn log_after(
        &self,
        conversation: ConversationId,
        after: u64,
        limit: u32,
    ) -> Result<Option<LogPage>, StoreError> {
        const OP: &str = "log_after";
        let err = |e| StoreError::from_sqlx(OP, e);
        let id = text(conversation.as_uuid());
        let head: Option<(i64, i64)> =
            sqlx::query_as("SELECT last_seq, log_floor FROM conversations WHERE id = ?1")
                .bind(&id)
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?;
        let Some((latest, floor)) = head else {
            return Ok(None);
        };
        let mut rows: Vec<LogRow> = sqlx::query_as(
            "SELECT seq, kind, actor_id, message_id, at, content, attachments, \
                    client_message_id, deleted_at FROM ( \
                SELECT m.seq AS seq, 'message' AS kind, m.sender_id AS actor_id, \
                       m.id AS message_id, m.created_at AS at, m.content AS content, \
                       m.attachments AS attachments, m.client_message_id AS client_message_id, \
                       m.deleted_at AS deleted_at \
                FROM messages m WHERE m.conversation_id = ?1 AND m.seq > ?2 \
                UNION ALL \
                SELECT e.seq, e.kind, e.actor_id, e.message_id, e.at, NULL, NULL, NULL, NULL \
                FROM conversation_events e WHERE e.conversation_id = ?1 AND e.seq > ?2 \
             ) ORDER BY seq LIMIT ?3",
        )
        .bind(&id)
        .bind(rows::stored_seq(after))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let created = if rows.iter().any(|r| r.kind == "created") {
            self.conversation(conversation).await?
        } else {
            None
        };
        let entries = rows
            .into_iter()
            .map(|row| row.into_entry(conversation, &created))
            .collect::<Result<Vec<_>, _>>()?;
        let latest = rows::seq(OP, latest)?.max(entries.last().map_or(0, |e| e.seq));
        Ok(Some(LogPage {
            entries,
            has_more,
            latest_seq: latest,
            floor: rows::seq(OP, floor)?,
        }))
    }

    async fn latest_seqs(
        &self,
        conversations: &[ConversationId],
    ) -> Result<HashMap<ConversationId, u64>, StoreError> {
        const OP: &str = "latest_seqs";
        if conversations.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<String> = conversations.iter().map(|c| text(c.as_uuid())).collect();
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT id, last_seq FROM conversations WHERE id IN (SELECT value FROM json_each(?1))",
        )
        .bind(Json(&ids))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        rows.into_iter()
            .map(|(id, seq)| {
                let id = ConversationId::from_uuid(id.decode(OP)?);
                Ok((id, rows::seq(OP, seq)?))
            })
            .collect()
    }

    async fn conversations_since(
        &self,
        user: &UserId,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Conversation>, StoreError> {
        const OP: &str = "conversations_since";
        let rows: Vec<ConversationRow> = sqlx::query_as(
            "SELECT c.id, c.title, c.created_at, c.last_message_at \
             FROM conversation_participants p JOIN conversations c ON c.id = p.conversation_id \
             WHERE p.user_id = ?1 AND c.created_at >= ?2 \
             ORDER BY c.created_at, c.id LIMIT ?3",
        )
        .bind(user.as_str())
        .bind(since.timestamp_millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let mut participants = self.participants_of(OP, &ids).await?;
        rows.into_iter()
            .map(|row| {
                let users = participants.remove(&row.id).unwrap_or_default();
                row.into_conversation(users)
            })
            .collect()
    }
}
