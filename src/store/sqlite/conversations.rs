//! [`Conversations`] and [`Participants`] on SQLite.

use super::*;

#[async_trait]
impl Conversations for SqliteStore {
    async fn create_conversation(
        &self,
        id: ConversationId,
        new: &NewConversation,
        now: DateTime<Utc>,
    ) -> Result<(Conversation, Created), StoreError> {
        const OP: &str = "create_conversation";
        let err = |e| StoreError::from_sqlx(OP, e);
        let key = new.participant_key();
        let id_text = text(id.as_uuid());
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(err)?;
        let inserted: Option<String> = sqlx::query_scalar(
            "INSERT INTO conversations (id, participant_key, title, created_at, last_seq) \
             VALUES (?1, ?2, ?3, ?4, 1) \
             ON CONFLICT (participant_key) DO NOTHING RETURNING id",
        )
        .bind(&id_text)
        .bind(&key)
        .bind(&new.title)
        .bind(now.timestamp_millis())
        .fetch_optional(&mut *tx)
        .await
        .map_err(err)?;

        if inserted.is_some() {
            let users: Vec<&str> = new.participant_ids.iter().map(UserId::as_str).collect();
            sqlx::query(
                "INSERT INTO conversation_participants (conversation_id, user_id) \
                 SELECT ?1, value FROM json_each(?2)",
            )
            .bind(&id_text)
            .bind(Json(&users))
            .execute(&mut *tx)
            .await
            .map_err(err)?;
            // The conversation's creation is the first entry of its log.
            sqlx::query(
                "INSERT INTO conversation_events (conversation_id, seq, kind, at) \
                 VALUES (?1, 1, 'created', ?2)",
            )
            .bind(&id_text)
            .bind(now.timestamp_millis())
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
                created_at: now.timestamp_millis().decode(OP)?,
                last_message_at: None,
            };
            return Ok((conversation, Created::New));
        }

        // Only a two-person key can conflict (NULL keys never do). Writers
        // are serialized, so the pair's conversation is fully committed.
        let existing: Option<String> =
            sqlx::query_scalar("SELECT id FROM conversations WHERE participant_key = ?1")
                .bind(&key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(err)?;
        tx.rollback().await.map_err(err)?;
        let existing = existing.ok_or_else(|| corrupt(OP, "conflicting conversation not found"))?;
        let conversation = self
            .conversation(ConversationId::from_uuid(existing.decode(OP)?))
            .await?
            .ok_or_else(|| corrupt(OP, "conflicting conversation not found"))?;
        Ok((conversation, Created::Existing))
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        const OP: &str = "conversation";
        let row: Option<ConversationRow> = sqlx::query_as(
            "SELECT id, title, created_at, last_message_at FROM conversations WHERE id = ?1",
        )
        .bind(text(id.as_uuid()))
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
             WHERE me.user_id = ?1 AND other.user_id <> ?1 \
               AND me.engaged_at IS NOT NULL AND other.engaged_at IS NOT NULL \
               AND NOT EXISTS (SELECT 1 FROM blocks b \
                   WHERE (b.blocker_id = ?1 AND b.blocked_id = other.user_id) \
                      OR (b.blocker_id = other.user_id AND b.blocked_id = ?1))",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        sorted_user_ids(OP, &rows)
    }

    async fn contacts_of(
        &self,
        users: &[UserId],
    ) -> Result<HashMap<UserId, Vec<UserId>>, StoreError> {
        const OP: &str = "contacts_of";
        if users.is_empty() {
            return Ok(HashMap::new());
        }
        let names: Vec<&str> = users.iter().map(UserId::as_str).collect();
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT DISTINCT me.user_id, other.user_id \
             FROM conversation_participants me \
             JOIN conversation_participants other ON other.conversation_id = me.conversation_id \
             WHERE me.user_id IN (SELECT value FROM json_each(?1)) AND other.user_id <> me.user_id \
               AND me.engaged_at IS NOT NULL AND other.engaged_at IS NOT NULL \
               AND NOT EXISTS (SELECT 1 FROM blocks b \
                   WHERE (b.blocker_id = me.user_id AND b.blocked_id = other.user_id) \
                      OR (b.blocker_id = other.user_id AND b.blocked_id = me.user_id))",
        )
        .bind(Json(&names))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        rows::contacts_by_user(OP, rows)
    }

    async fn mark_engaged(
        &self,
        conversation: ConversationId,
        user: &UserId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE conversation_participants SET engaged_at = ?3 \
             WHERE conversation_id = ?1 AND user_id = ?2 AND engaged_at IS NULL",
        )
        .bind(text(conversation.as_uuid()))
        .bind(user.as_str())
        .bind(now.timestamp_millis())
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("mark_engaged", e))?;
        Ok(done.rows_affected() == 1)
    }
}

#[async_trait]
impl Blocks for SqliteStore {
    async fn block_user(
        &self,
        blocker: &UserId,
        blocked: &UserId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO blocks (blocker_id, blocked_id, created_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(blocker.as_str())
        .bind(blocked.as_str())
        .bind(now.timestamp_millis())
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("block_user", e))?;
        Ok(done.rows_affected() == 1)
    }

    async fn unblock_user(&self, blocker: &UserId, blocked: &UserId) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM blocks WHERE blocker_id = ?1 AND blocked_id = ?2")
            .bind(blocker.as_str())
            .bind(blocked.as_str())
            .execute(&self.pool)
            .await
            .map_err(|e| StoreError::from_sqlx("unblock_user", e))?;
        Ok(done.rows_affected() == 1)
    }

    async fn blocked_by(
        &self,
        blocker: &UserId,
    ) -> Result<Vec<(UserId, DateTime<Utc>)>, StoreError> {
        const OP: &str = "blocked_by";
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT blocked_id, created_at FROM blocks WHERE blocker_id = ?1 \
             ORDER BY created_at DESC, blocked_id",
        )
        .bind(blocker.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        rows.into_iter()
            .map(|(id, at)| Ok((user_id(OP, &id)?, at.decode(OP)?)))
            .collect()
    }

    async fn block_relations_of(
        &self,
        users: &[UserId],
    ) -> Result<HashMap<UserId, BlockRelations>, StoreError> {
        const OP: &str = "block_relations_of";
        if users.is_empty() {
            return Ok(HashMap::new());
        }
        let names: Vec<&str> = users.iter().map(UserId::as_str).collect();
        // (user, other, whether the user is the blocker)
        let rows: Vec<(String, String, bool)> = sqlx::query_as(
            "SELECT blocker_id, blocked_id, true FROM blocks WHERE blocker_id IN (SELECT value FROM json_each(?1)) \
             UNION ALL SELECT blocked_id, blocker_id, false FROM blocks WHERE blocked_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(Json(&names))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        let mut relations: HashMap<UserId, BlockRelations> = HashMap::new();
        for (user, other, blocks) in rows {
            let entry = relations.entry(user_id(OP, &user)?).or_default();
            let other = user_id(OP, &other)?;
            if blocks {
                entry.blocks.push(other);
            } else {
                entry.blocked_by.push(other);
            }
        }
        for r in relations.values_mut() {
            r.blocks.sort();
            r.blocked_by.sort();
        }
        Ok(relations)
    }

    async fn block_relations(&self, user: &UserId) -> Result<BlockRelations, StoreError> {
        const OP: &str = "block_relations";
        let rows: Vec<(String, bool)> = sqlx::query_as(
            "SELECT blocked_id, true FROM blocks WHERE blocker_id = ?1 \
             UNION ALL SELECT blocker_id, false FROM blocks WHERE blocked_id = ?1",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        let (blocks, blocked_by): (Vec<_>, Vec<_>) = rows.into_iter().partition(|(_, mine)| *mine);
        let ids =
            |rows: Vec<(String, bool)>| rows.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        Ok(BlockRelations {
            blocks: sorted_user_ids(OP, &ids(blocks))?,
            blocked_by: sorted_user_ids(OP, &ids(blocked_by))?,
        })
    }
}

#[async_trait]
impl Participants for SqliteStore {
    async fn is_participant(
        &self,
        conversation: ConversationId,
        user: &UserId,
    ) -> Result<bool, StoreError> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM conversation_participants \
             WHERE conversation_id = ?1 AND user_id = ?2)",
        )
        .bind(text(conversation.as_uuid()))
        .bind(user.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("is_participant", e))
    }

    async fn participants(&self, conversation: ConversationId) -> Result<Vec<UserId>, StoreError> {
        const OP: &str = "participants";
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT user_id FROM conversation_participants WHERE conversation_id = ?1",
        )
        .bind(text(conversation.as_uuid()))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        sorted_user_ids(OP, &rows)
    }
}
