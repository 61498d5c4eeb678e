//! [`MessageInserts`] (the batched write path of sends) and [`Messages`] on Postgres.

use super::*;

#[async_trait]
impl MessageInserts for PostgresStore {
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
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids = Vec::with_capacity(batch.len());
        let mut conversations = Vec::with_capacity(batch.len());
        let mut senders = Vec::with_capacity(batch.len());
        let mut contents = Vec::with_capacity(batch.len());
        let mut attachments = Vec::with_capacity(batch.len());
        let mut client_ids = Vec::with_capacity(batch.len());
        let mut times = Vec::with_capacity(batch.len());
        for m in batch {
            ids.push(m.id.as_uuid());
            conversations.push(m.message.conversation_id.as_uuid());
            senders.push(m.sender.as_str());
            contents.push(m.message.content.as_str());
            attachments.push(
                serde_json::to_string(&m.message.attachments)
                    .map_err(|e| corrupt(OP, format!("attachments: {e}")))?,
            );
            client_ids.push(
                m.message
                    .client_message_id
                    .as_ref()
                    .map(ClientMessageId::as_str),
            );
            times.push(millis(m.now));
        }
        // Failing to get a connection writes nothing; once the statement is
        // on its way, a broken connection leaves its outcome unknown.
        let mut connection = self.pool.acquire().await.map_err(err)?;
        // One statement, so one round trip and one commit for the whole
        // batch. Rows are inserted in input order; a repeat of a
        // `(sender, clientMessageId)` already stored, or earlier in the
        // batch, is left out before numbers are given (PROTOCOL.md §8: each
        // stored message takes the next number of its conversation's log).
        // A key inserted by a concurrent, uncommitted statement makes this
        // one wait for it and then skip the row: its number is then taken,
        // and logged as `skipped`, so the numbers stay without holes.
        // Conversations are updated (numbers, activity) in id order, so that
        // two batches touching the same conversations lock them in the same
        // order; the conversation's row lock also orders the numbers of
        // concurrent batches. GREATEST ignores NULL and keeps
        // `last_message_at` monotonic even if node clocks disagree a little;
        // a new message un-archives its conversation (retention, issue #14);
        // sending is taking part (presence by consent, issue #25).
        let stored: Vec<MessageRow> = sqlx::query_as(concat!(
            "WITH input AS ( \
                SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], \
                                     $5::text[], $6::text[], $7::timestamptz[]) WITH ORDINALITY \
                    AS t(id, conversation_id, sender_id, content, attachments, \
                         client_message_id, created_at, position) \
             ), firsts AS ( \
                SELECT DISTINCT ON (sender_id, COALESCE(client_message_id, id::text)) * \
                FROM input ORDER BY sender_id, COALESCE(client_message_id, id::text), position \
             ), fresh AS ( \
                SELECT f.* FROM firsts f \
                WHERE f.client_message_id IS NULL OR NOT EXISTS ( \
                    SELECT 1 FROM messages m \
                    WHERE m.sender_id = f.sender_id AND m.client_message_id = f.client_message_id) \
             ), counted AS ( \
                SELECT conversation_id, count(*) AS n, max(created_at) AS at \
                FROM fresh GROUP BY conversation_id ORDER BY conversation_id \
             ), bumped AS ( \
                UPDATE conversations c SET last_seq = c.last_seq + k.n, \
                    last_message_at = GREATEST(c.last_message_at, k.at), archived_at = NULL \
                FROM counted k WHERE c.id = k.conversation_id \
                RETURNING c.id, c.last_seq - k.n AS first_seq \
             ), numbered AS ( \
                SELECT f.*, b.first_seq \
                    + row_number() OVER (PARTITION BY f.conversation_id ORDER BY f.position) AS seq \
                FROM fresh f JOIN bumped b ON b.id = f.conversation_id \
             ), inserted AS ( \
                INSERT INTO messages \
                    (id, conversation_id, sender_id, content, attachments, client_message_id, \
                     created_at, seq) \
                SELECT id, conversation_id, sender_id, content, attachments::jsonb, \
                       client_message_id, created_at, seq \
                FROM numbered ORDER BY position \
                ON CONFLICT (sender_id, client_message_id) DO NOTHING \
                RETURNING ",
            message_columns!(),
            " ), skipped AS ( \
                INSERT INTO conversation_events (conversation_id, seq, kind, at) \
                SELECT n.conversation_id, n.seq, 'skipped', n.created_at FROM numbered n \
                WHERE NOT EXISTS (SELECT 1 FROM inserted i WHERE i.id = n.id) \
             ), engaged AS ( \
                UPDATE conversation_participants p SET engaged_at = e.at \
                FROM (SELECT conversation_id, sender_id, min(created_at) AS at FROM inserted \
                      GROUP BY conversation_id, sender_id) e \
                WHERE p.conversation_id = e.conversation_id AND p.user_id = e.sender_id \
                  AND p.engaged_at IS NULL \
             ), outboxed AS ( \
                INSERT INTO notification_outbox (message_id, conversation_id, sender_id) \
                SELECT id, conversation_id, sender_id FROM inserted WHERE $8 \
             ) \
             SELECT ",
            message_columns!(),
            " FROM inserted"
        ))
        .bind(&ids)
        .bind(&conversations)
        .bind(&senders)
        .bind(&contents)
        .bind(&attachments)
        .bind(&client_ids)
        .bind(&times)
        .bind(self.outbox)
        .fetch_all(&mut *connection)
        .await
        .map_err(|e| StoreError::from_sqlx_write(OP, e))?;
        drop(connection);
        let mut stored: HashMap<Uuid, MessageRow> =
            stored.into_iter().map(|row| (row.id, row)).collect();

        // What was not inserted repeats a `(sender, clientMessageId)` that is
        // now committed (ours or the statement we waited for): read it back.
        let (dup_senders, dup_client_ids): (Vec<&str>, Vec<&str>) = batch
            .iter()
            .filter(|m| !stored.contains_key(&m.id.as_uuid()))
            .filter_map(|m| {
                let client_id = m.message.client_message_id.as_ref()?;
                Some((m.sender.as_str(), client_id.as_str()))
            })
            .unzip();
        let mut existing: HashMap<(String, String), Message> = HashMap::new();
        // The batch is committed: a failure to read its repeats back leaves
        // only those unknown to their callers (a retry settles them).
        let mut read_back: Result<(), StoreError> = Ok(());
        if !dup_senders.is_empty() {
            let rows: Vec<MessageRow> = match sqlx::query_as(concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE (sender_id, client_message_id) IN \
                    (SELECT * FROM UNNEST($1::text[], $2::text[]))"
            ))
            .bind(&dup_senders)
            .bind(&dup_client_ids)
            .fetch_all(&self.pool)
            .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    read_back = Err(match err(e) {
                        StoreError::Unavailable { source, .. } => {
                            StoreError::OutcomeUnknown { op: OP, source }
                        }
                        other => other,
                    });
                    Vec::new()
                }
            };
            for row in rows {
                let key = (
                    row.sender_id.clone(),
                    row.client_message_id.clone().unwrap_or_default(),
                );
                existing.insert(key, row.try_into()?);
            }
        }

        Ok(batch
            .iter()
            .map(|m| {
                if let Some(row) = stored.remove(&m.id.as_uuid()) {
                    return Ok((row.try_into()?, Inserted::New));
                }
                let client_id = m
                    .message
                    .client_message_id
                    .as_ref()
                    .map_or("", ClientMessageId::as_str);
                read_back.clone()?;
                let found = existing
                    .get(&(m.sender.as_str().to_owned(), client_id.to_owned()))
                    .ok_or_else(|| corrupt(OP, "message neither stored nor found"))?;
                duplicate_of(found, m)
            })
            .collect())
    }
}

#[async_trait]
impl Messages for PostgresStore {
    async fn history(
        &self,
        conversation: ConversationId,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        // Absent bounds become the extreme UUIDs, so both bounds are always
        // index range conditions (no `$n IS NULL OR ...` that a generic
        // prepared plan could not use). No UUIDv7 equals nil or max.
        let before = page.before.map_or(Uuid::max(), |m| m.as_uuid());
        let after = page.after.map_or(Uuid::nil(), |m| m.as_uuid());
        let sql = if page.reads_backwards() {
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE conversation_id = $1 AND deleted_at IS NULL \
                 AND id < $2 AND id > $3 ORDER BY id DESC LIMIT $4"
            )
        } else {
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE conversation_id = $1 AND deleted_at IS NULL \
                 AND id < $2 AND id > $3 ORDER BY id ASC LIMIT $4"
            )
        };
        let rows: Vec<MessageRow> = sqlx::query_as(sql)
            .bind(conversation.as_uuid())
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
            " FROM messages WHERE id = $1 AND deleted_at IS NULL"
        ))
        .bind(id.as_uuid())
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
        // The deletion, its number and its log entry in one statement.
        let seq: Option<i64> = sqlx::query_scalar(
            "WITH deleted AS ( \
                UPDATE messages SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL \
                RETURNING conversation_id, sender_id \
             ), bumped AS ( \
                UPDATE conversations c SET last_seq = c.last_seq + 1 \
                FROM deleted d WHERE c.id = d.conversation_id RETURNING c.id, c.last_seq \
             ), logged AS ( \
                INSERT INTO conversation_events (conversation_id, seq, kind, actor_id, message_id, at) \
                SELECT b.id, b.last_seq, 'deleted', d.sender_id, $1, $2 FROM bumped b, deleted d \
             ) \
             SELECT last_seq FROM bumped",
        )
        .bind(id.as_uuid())
        .bind(millis(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        seq.map(|s| rows::seq(OP, s)).transpose()
    }

    async fn latest_message_id(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<MessageId>, StoreError> {
        let id: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM messages WHERE conversation_id = $1 AND deleted_at IS NULL \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(conversation.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("latest_message_id", e))?;
        Ok(id.map(MessageId::from_uuid))
    }
}
