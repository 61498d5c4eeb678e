//! [`UnreadCounters`] on Redis: the unread cache, one hash per user.

use super::*;

#[async_trait]
impl UnreadCounters for RedisEphemeral {
    async fn message_committed(
        &self,
        conversation: ConversationId,
        sender: &UserId,
        recipients: &[UserId],
    ) -> Result<MessageCommitted, EphemeralError> {
        self.commits
            .call(Committed {
                conversation,
                sender: sender.clone(),
                recipients: recipients.to_vec(),
            })
            .await
    }

    async fn replace_unread(
        &self,
        user: &UserId,
        counts: &UnreadCounts,
    ) -> Result<(), EphemeralError> {
        let mut args = Vec::with_capacity(counts.len() * 2 + 1);
        args.push(millis(UNREAD_LIFETIME).into());
        for (conversation, n) in counts.iter().filter(|(_, n)| **n > 0) {
            args.push(conversation.to_string().into());
            args.push(n.to_string().into());
        }
        self.redis
            .eval::<()>(
                "replace_unread",
                &self.redis.scripts.replace_unread,
                vec![self.redis.keys.unread(user)],
                args,
            )
            .await
    }

    async fn set_conversation_unread(
        &self,
        conversation: ConversationId,
        counts: &[(UserId, u64)],
    ) -> Result<UnreadChanges, EphemeralError> {
        const OP: &str = "set_conversation_unread";
        if counts.is_empty() {
            return Ok(Vec::new());
        }
        let keys = counts
            .iter()
            .map(|(u, _)| self.redis.keys.unread(u))
            .collect();
        let mut args: Vec<Value> = Vec::with_capacity(counts.len() + 1);
        args.push(conversation.to_string().into());
        args.extend(counts.iter().map(|(_, n)| n.to_string().into()));
        let reply: Vec<Value> = self
            .redis
            .eval(OP, &self.redis.scripts.set_conversation_unread, keys, args)
            .await?;
        if reply.len() != counts.len() * 2 {
            return Err(unexpected(OP));
        }
        Ok(unread_changes(
            counts.iter().map(|(u, _)| u.clone()),
            &reply,
        ))
    }

    async fn unread(&self, user: &UserId) -> Result<Option<UnreadCounts>, EphemeralError> {
        let fields: HashMap<String, String> = self
            .redis
            .pool
            .hgetall(self.redis.keys.unread(user))
            .await
            .map_err(|e| unavailable("unread", e))?;
        Ok(counters(&fields))
    }

    /// One HGETALL per user, all sent at once: the pool's connections
    /// pipeline them, so a batch costs about one round trip.
    async fn unread_of(
        &self,
        users: &[UserId],
    ) -> Result<HashMap<UserId, UnreadCounts>, EphemeralError> {
        let reads = users.iter().map(|user| {
            self.redis
                .pool
                .hgetall::<HashMap<String, String>, _>(self.redis.keys.unread(user))
        });
        let replies = futures_util::future::join_all(reads).await;
        let mut present = HashMap::new();
        for (user, reply) in users.iter().zip(replies) {
            let fields = reply.map_err(|e| unavailable("unread_of", e))?;
            if let Some(counts) = counters(&fields) {
                present.insert(user.clone(), counts);
            }
        }
        Ok(present)
    }
}

/// A user's counters as stored (`None`: missing), without the sentinel and zeros.
fn counters(fields: &HashMap<String, String>) -> Option<UnreadCounts> {
    if fields.is_empty() {
        return None;
    }
    Some(
        fields
            .iter()
            .filter(|(field, _)| field.as_str() != UNREAD_SENTINEL)
            .filter_map(|(field, n)| {
                let n: u64 = n.parse().ok()?;
                Some((stored_conversation(field)?, n)).filter(|_| n > 0)
            })
            .collect(),
    )
}

/// Pairs each user with its `count, total` from a script's reply (`-1, -1`
/// for missing counters: `None`).
pub(super) fn unread_changes(
    users: impl IntoIterator<Item = UserId>,
    reply: &[Value],
) -> UnreadChanges {
    users
        .into_iter()
        .zip(reply.chunks_exact(2))
        .map(|(user, pair)| {
            let count = pair.first().and_then(Value::as_i64);
            let total = pair.get(1).and_then(Value::as_i64);
            let counts = match (count, total) {
                (Some(c), Some(t)) => u64::try_from(c).ok().zip(u64::try_from(t).ok()),
                _ => None,
            };
            (user, counts)
        })
        .collect()
}
