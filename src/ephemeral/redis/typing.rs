//! [`TypingState`] on Redis: typing states with their expiries.

use super::*;

#[async_trait]
impl TypingState for RedisEphemeral {
    async fn start_typing(
        &self,
        typist: &Typist,
        now: UnixMillis,
        ttl: Duration,
        relay_interval: Duration,
    ) -> Result<bool, EphemeralError> {
        let (c, u) = (typist.conversation_id, &typist.user_id);
        let relay: i64 = self
            .redis
            .eval(
                "start_typing",
                &self.redis.scripts.start_typing,
                self.redis.keys.typing_state(c, u),
                vec![
                    u.as_str().into(),
                    typist.user_name.as_str().into(),
                    now.into(),
                    now.saturating_add(millis(ttl)).into(),
                    millis(relay_interval).into(),
                    typing_member(c, u).into(),
                    c.to_string().into(),
                ],
            )
            .await?;
        Ok(relay == 1)
    }

    async fn stop_typing(
        &self,
        conversation: ConversationId,
        user: &UserId,
    ) -> Result<bool, EphemeralError> {
        let removed: i64 = self
            .redis
            .eval(
                "stop_typing",
                &self.redis.scripts.stop_typing,
                self.redis.keys.typing_state(conversation, user),
                vec![
                    user.as_str().into(),
                    typing_member(conversation, user).into(),
                    conversation.to_string().into(),
                ],
            )
            .await?;
        Ok(removed == 1)
    }

    async fn typing_conversations_of(
        &self,
        user: &UserId,
    ) -> Result<Vec<ConversationId>, EphemeralError> {
        let ids: Vec<String> = self
            .redis
            .pool
            .smembers(self.redis.keys.typing_user(user))
            .await
            .map_err(|e| unavailable("typing_conversations_of", e))?;
        Ok(ids.iter().filter_map(|c| stored_conversation(c)).collect())
    }

    async fn typing_in(
        &self,
        conversation: ConversationId,
        now: UnixMillis,
    ) -> Result<Vec<Typist>, EphemeralError> {
        let reply: Vec<Value> = self
            .redis
            .eval(
                "typing_in",
                &self.redis.scripts.typing_in,
                vec![
                    self.redis.keys.typing(conversation),
                    self.redis.keys.typing_names(conversation),
                ],
                vec![now.into()],
            )
            .await?;
        Ok(reply
            .chunks_exact(2)
            .filter_map(|pair| {
                let [user, name] = pair else { return None };
                Some(Typist {
                    conversation_id: conversation,
                    user_id: stored_user(&user.as_str()?)?,
                    user_name: name.as_string().unwrap_or_default(),
                })
            })
            .collect())
    }

    async fn take_expired_typing(&self, now: UnixMillis) -> Result<Vec<Typist>, EphemeralError> {
        let mut expired = Vec::new();
        loop {
            let batch: Result<Vec<Value>, _> = self
                .redis
                .eval(
                    "take_expired_typing",
                    &self.redis.scripts.take_expired_typing,
                    vec![self.redis.keys.typing_expiries()],
                    vec![
                        now.into(),
                        TYPING_SWEEP_BATCH.to_string().into(),
                        self.redis.keys.prefix.as_str().into(),
                    ],
                )
                .await;
            let batch = match batch {
                Ok(batch) => batch,
                Err(e) if expired.is_empty() => return Err(e),
                // What was already removed must still be announced; the rest
                // is taken by the next sweep.
                Err(e) => {
                    tracing::warn!(error = %e, "typing sweep interrupted");
                    break;
                }
            };
            let taken = batch.len() / 3;
            expired.extend(batch.chunks_exact(3).filter_map(|triple| {
                let [c, u, name] = triple else { return None };
                Some(Typist {
                    conversation_id: stored_conversation(&c.as_str()?)?,
                    user_id: stored_user(&u.as_str()?)?,
                    user_name: name.as_string().unwrap_or_default(),
                })
            }));
            if taken < TYPING_SWEEP_BATCH {
                break;
            }
        }
        Ok(expired)
    }
}
