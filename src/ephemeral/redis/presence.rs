//! [`PresenceState`] on Redis: sockets per user, nodes and their heartbeats.

use super::*;

#[async_trait]
impl PresenceState for RedisEphemeral {
    async fn socket_connected(
        &self,
        user: &UserId,
        socket_id: &str,
    ) -> Result<bool, EphemeralError> {
        let admitted = self.admit_socket(user, socket_id, usize::MAX).await?;
        Ok(admitted == SocketAdmission::First)
    }

    async fn admit_socket(
        &self,
        user: &UserId,
        socket_id: &str,
        cap: usize,
    ) -> Result<SocketAdmission, EphemeralError> {
        let admitted: i64 = self
            .redis
            .eval(
                "admit_socket",
                &self.redis.scripts.admit_socket,
                vec![
                    self.redis.keys.user_sockets(user),
                    self.redis.keys.node_sockets(&self.node_id),
                ],
                vec![
                    socket_id.into(),
                    self.node_id.as_str().into(),
                    user.as_str().into(),
                    i64::try_from(cap).unwrap_or(i64::MAX).into(),
                ],
            )
            .await?;
        Ok(match admitted {
            1 => SocketAdmission::First,
            0 => SocketAdmission::Another,
            _ => SocketAdmission::OverCap,
        })
    }

    async fn socket_disconnected(
        &self,
        user: &UserId,
        socket_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, EphemeralError> {
        let last: i64 = self
            .redis
            .eval(
                "socket_disconnected",
                &self.redis.scripts.socket_disconnected,
                vec![
                    self.redis.keys.user_sockets(user),
                    self.redis.keys.node_sockets(&self.node_id),
                    self.redis.keys.last_seen(user),
                ],
                vec![socket_id.into(), encode_last_seen(now).into()],
            )
            .await?;
        Ok((last == 1).then_some(now))
    }

    async fn socket_count(&self, user: &UserId) -> Result<usize, EphemeralError> {
        let n: u64 = self
            .redis
            .pool
            .hlen(self.redis.keys.user_sockets(user))
            .await
            .map_err(|e| unavailable("socket_count", e))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    async fn presence(
        &self,
        users: &[UserId],
    ) -> Result<HashMap<UserId, Presence>, EphemeralError> {
        const OP: &str = "presence";
        if users.is_empty() {
            return Ok(HashMap::new());
        }
        let keys = users
            .iter()
            .flat_map(|u| {
                [
                    self.redis.keys.user_sockets(u),
                    self.redis.keys.last_seen(u),
                ]
            })
            .collect();
        let reply: Vec<Value> = self
            .redis
            .eval(OP, &self.redis.scripts.presence, keys, Vec::new())
            .await?;
        if reply.len() != users.len() * 2 {
            return Err(unexpected(OP));
        }
        Ok(users
            .iter()
            .zip(reply.chunks_exact(2))
            .map(|(user, pair)| {
                let online = pair.first().and_then(Value::as_i64) == Some(1);
                let last_seen = if online {
                    None
                } else {
                    pair.get(1)
                        .and_then(Value::as_str)
                        .and_then(|s| decode_last_seen(&s))
                };
                (user.clone(), Presence { online, last_seen })
            })
            .collect())
    }

    async fn heartbeat(&self, now: UnixMillis, ttl: Duration) -> Result<bool, EphemeralError> {
        let added: i64 = self
            .redis
            .eval(
                "heartbeat",
                &self.redis.scripts.heartbeat,
                vec![self.redis.keys.nodes(), self.redis.keys.node(&self.node_id)],
                vec![
                    self.node_id.as_str().into(),
                    millis(ttl).max(1).into(),
                    now.into(),
                ],
            )
            .await?;
        Ok(added == 1)
    }

    /// `claim_node.lua` without its "is it dead, and is it mine to claim"
    /// guards: the node forgets its own sockets.
    async fn forget_own_sockets(
        &self,
        now: UnixMillis,
    ) -> Result<Vec<(UserId, DateTime<Utc>)>, EphemeralError> {
        const OP: &str = "forget_own_sockets";
        let last_seen = DateTime::from_timestamp_millis(now).ok_or_else(|| unexpected(OP))?;
        let users = self.claim_node(OP, &self.node_id, now, Claim::Own).await?;
        Ok(users.into_iter().map(|u| (u, last_seen)).collect())
    }

    /// Liveness is the node key's TTL, counted by the Redis clock; `now` is
    /// only the last-seen time given to the users who go offline.
    async fn sweep_dead_nodes(&self, now: UnixMillis) -> Result<Swept, EphemeralError> {
        const OP: &str = "sweep_dead_nodes";
        let last_seen = DateTime::from_timestamp_millis(now).ok_or_else(|| unexpected(OP))?;
        let dead: Vec<String> = self
            .redis
            .eval(
                OP,
                &self.redis.scripts.dead_nodes,
                vec![self.redis.keys.nodes()],
                vec![self.redis.keys.prefix.as_str().into()],
            )
            .await?;
        let mut swept = Swept::default();
        for node in dead {
            match self.claim_node(OP, &node, now, Claim::Dead).await {
                Ok(users) => {
                    swept
                        .users
                        .extend(users.into_iter().map(|u| (u, last_seen)));
                    swept.nodes.push(node);
                }
                Err(e) if swept.nodes.is_empty() => return Err(e),
                // Users already claimed must still be announced; the node
                // that failed stays registered and is retried next sweep.
                Err(e) => {
                    tracing::warn!(error = %e, "dead-node sweep interrupted");
                    break;
                }
            }
        }
        Ok(swept)
    }
}
