//! [`Conversations`] and [`Participants`] on Postgres.

use super::*;

#[async_trait]
impl Conversations for PostgresStore {
    async fn create_conversation(
        &self,
        id: ConversationId,
        new: &NewConversation,
        now: DateTime<Utc>,
    ) -> Result<(Conversation, Created), StoreError> {
        const OP: &str = "create_conversation";
        let err = |e| StoreError::from_sqlx(OP, e);
        let now = millis(now);
        let key = new.participant_key();
        let mut tx = self.pool.begin().await.map_err(err)?;
        // A concurrent insert of the same key makes this statement wait for
        // that transaction; once it commits, ours does nothing.
        let inserted: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO conversations (id, participant_key, title, created_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (participant_key) DO NOTHING RETURNING id",
        )
        .bind(id.as_uuid())
        .bind(&key)
        .bind(&new.title)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(err)?;

        if inserted.is_some() {
            let users: Vec<&str> = new.participant_ids.iter().map(UserId::as_str).collect();
            sqlx::query(
                "INSERT INTO conversation_participants (conversation_id, user_id) \
                 SELECT $1, u FROM UNNEST($2::text[]) AS u",
            )
            .bind(id.as_uuid())
            .bind(&users)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
            tx.commit().await.map_err(err)?;
            let mut participant_ids = new.participant_ids.clone();
            participant_ids.sort();
            let conversation = Conversation {
                id,
                participant_ids,
                title: new.title.clone(),
                created_at: now,
                last_message_at: None,
            };
            return Ok((conversation, Created::New));
        }

        // Only a two-person key can conflict (NULL keys never do); the pair's
        // conversation is committed, participants included, by now.
        let existing: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM conversations WHERE participant_key = $1")
                .bind(&key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(err)?;
        tx.rollback().await.map_err(err)?;
        let existing = existing.ok_or_else(|| corrupt(OP, "conflicting conversation not found"))?;
        let conversation = self
            .conversation(ConversationId::from_uuid(existing))
            .await?
            .ok_or_else(|| corrupt(OP, "conflicting conversation not found"))?;
        Ok((conversation, Created::Existing))
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        const OP: &str = "conversation";
        let row: Option<ConversationRow> = sqlx::query_as(
            "SELECT id, title, created_at, last_message_at FROM conversations WHERE id = $1",
        )
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        let Some(row) = row else { return Ok(None) };
        // Participants never change after creation, so a second statement
        // outside a transaction reads a consistent set.
        let participants = self.participants(id).await?;
        row.into_conversation(participants).map(Some)
    }

    async fn list_conversations(
        &self,
        user: &UserId,
        limit: u32,
        cursor: Option<ListCursor>,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        self.list("list_conversations", user, limit, cursor, false)
            .await
    }

    async fn list_archived_conversations(
        &self,
        user: &UserId,
        limit: u32,
        cursor: Option<ListCursor>,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        self.list("list_archived_conversations", user, limit, cursor, true)
            .await
    }

    async fn contacts(&self, user: &UserId) -> Result<Vec<UserId>, StoreError> {
        const OP: &str = "contacts";
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT other.user_id \
             FROM conversation_participants me \
             JOIN conversation_participants other ON other.conversation_id = me.conversation_id \
             WHERE me.user_id = $1 AND other.user_id <> $1",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        sorted_user_ids(OP, &rows)
    }
}

#[async_trait]
impl Participants for PostgresStore {
    async fn is_participant(
        &self,
        conversation: ConversationId,
        user: &UserId,
    ) -> Result<bool, StoreError> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM conversation_participants \
             WHERE conversation_id = $1 AND user_id = $2)",
        )
        .bind(conversation.as_uuid())
        .bind(user.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("is_participant", e))
    }

    async fn participants(&self, conversation: ConversationId) -> Result<Vec<UserId>, StoreError> {
        const OP: &str = "participants";
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT user_id FROM conversation_participants WHERE conversation_id = $1",
        )
        .bind(conversation.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        sorted_user_ids(OP, &rows)
    }
}
