//! Presence across a user's devices and nodes: sockets connecting and
//! disconnecting, `get-presence`, and the cluster membership that heals
//! presence after a node dies or restarts.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::{instrument, warn};

use super::reads::unread_update;
use super::typing::now_unix_millis;
use super::{Messaging, ServiceResult};
use crate::auth::User;
use crate::domain::{self, UserId, format_time};
use crate::ephemeral::SocketAdmission;
use crate::fanout::Audience;
use crate::protocol::{OfflineEvent, OnlineEvent, PresenceReport, ev, rooms};

/// Whether a new socket may connect (`Messaging::admit_socket`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Recorded in presence; `first` when it is the user's first device.
    Admitted { first: bool },
    /// The user holds as many sockets as they may: refused, nothing recorded.
    OverCap,
}

impl Messaging {
    // ------------------------------------------------------------- presence

    /// `get-presence`: answers only for users sharing a conversation with the
    /// caller; everyone else reads as offline with no last-seen time.
    #[instrument(skip_all, fields(user.id = %user.id))]
    pub async fn presence(&self, user: &User, ids: Vec<UserId>) -> ServiceResult<PresenceReport> {
        let contacts = self
            .inner
            .contacts
            .visible(self.store(), &user.id, &ids)
            .await?;
        let visible: Vec<UserId> = ids
            .iter()
            .filter(|id| contacts.contains(*id))
            .cloned()
            .collect();
        let known = self.ephemeral().presence.presence(&visible).await?;
        let mut report = PresenceReport {
            online: HashMap::new(),
            last_seen: HashMap::new(),
        };
        for id in ids {
            let p = known.get(&id);
            report
                .online
                .insert(id.clone(), p.is_some_and(|p| p.online));
            report
                .last_seen
                .insert(id, p.and_then(|p| p.last_seen).as_ref().map(format_time));
        }
        Ok(report)
    }

    /// A socket of `user` connected: presence, `user-online` to contacts when
    /// it is the first device, and the unread totals to that socket.
    #[instrument(skip_all, fields(user.id = %user.id, socket.id = socket_id))]
    pub async fn socket_connected(&self, user: &User, socket_id: &str) -> ServiceResult<()> {
        let first = match self.admit_socket(user, socket_id, usize::MAX).await? {
            Admission::Admitted { first } => first,
            Admission::OverCap => false,
        };
        self.welcome_connection(user, socket_id, first).await
    }

    /// Admits a socket of `user` under the per-user socket cap and records
    /// it in presence, in one atomic step (concurrent handshakes cannot pass
    /// the cap). The gateway does this before the client is told it is
    /// connected: a device that connects and then closes another would
    /// otherwise be counted after the close, and contacts would see the
    /// user go offline and come back.
    #[instrument(skip_all, fields(user.id = %user.id, socket.id = socket_id))]
    pub async fn admit_socket(
        &self,
        user: &User,
        socket_id: &str,
        cap: usize,
    ) -> ServiceResult<Admission> {
        Ok(
            match self
                .ephemeral()
                .presence
                .admit_socket(&user.id, socket_id, cap)
                .await?
            {
                SocketAdmission::First => Admission::Admitted { first: true },
                SocketAdmission::Another => Admission::Admitted { first: false },
                SocketAdmission::OverCap => Admission::OverCap,
            },
        )
    }

    /// After the client is connected: `user-online` to contacts when this
    /// is the first device, and the unread totals to the socket.
    #[instrument(skip_all, fields(user.id = %user.id, socket.id = socket_id))]
    pub async fn welcome_connection(
        &self,
        user: &User,
        socket_id: &str,
        first: bool,
    ) -> ServiceResult<()> {
        if first {
            let event = OnlineEvent {
                user_id: &user.id,
                at: format_time(&domain::now_millis()),
            };
            self.tell_contacts(&user.id, ev::USER_ONLINE, &event).await;
        }
        let counts = self.current_unread(&user.id).await?;
        self.emit_to_socket(
            socket_id,
            ev::UNREAD_COUNT_UPDATED,
            &unread_update(&counts, None),
        );
        Ok(())
    }

    /// A socket of `user` disconnected: when it was the last device, typing
    /// states end and contacts get `user-offline`. When shared state cannot
    /// be told, the disconnection is kept and told again after the next
    /// successful heartbeat (otherwise the user would read online until this
    /// node dies).
    #[instrument(skip_all, fields(user.id = %user.id, socket.id = socket_id))]
    pub async fn socket_disconnected(&self, user: &User, socket_id: &str) -> ServiceResult<()> {
        let now: DateTime<Utc> = domain::now_millis();
        match self
            .ephemeral()
            .presence
            .socket_disconnected(&user.id, socket_id, now)
            .await
        {
            Ok(Some(last_seen)) => self.went_offline(user, last_seen).await,
            Ok(None) => Ok(()),
            Err(e) => {
                self.inner
                    .pending_disconnects
                    .keep(user.clone(), socket_id.to_owned());
                Err(e.into())
            }
        }
    }

    /// A disconnection that failed to be recorded, again. The first attempt
    /// may have reached Redis and only its answer been lost: then the socket
    /// is gone already, and if the user has no socket left, nobody has
    /// announced the offline yet.
    async fn retry_disconnection(&self, user: &User, socket_id: &str) -> ServiceResult<()> {
        let now: DateTime<Utc> = domain::now_millis();
        let recorded = self
            .ephemeral()
            .presence
            .socket_disconnected(&user.id, socket_id, now)
            .await;
        match recorded {
            Ok(Some(last_seen)) => self.went_offline(user, last_seen).await,
            Ok(None) if self.ephemeral().presence.socket_count(&user.id).await? == 0 => {
                let last_seen = self
                    .ephemeral()
                    .presence
                    .presence(std::slice::from_ref(&user.id))
                    .await?
                    .get(&user.id)
                    .and_then(|p| p.last_seen)
                    .unwrap_or(now);
                self.went_offline(user, last_seen).await
            }
            Ok(None) => Ok(()),
            Err(e) => {
                self.inner
                    .pending_disconnects
                    .keep(user.clone(), socket_id.to_owned());
                Err(e.into())
            }
        }
    }

    /// The user's last device is gone: typing ends, contacts are told.
    async fn went_offline(&self, user: &User, last_seen: DateTime<Utc>) -> ServiceResult<()> {
        for conversation in self
            .ephemeral()
            .typing
            .typing_conversations_of(&user.id)
            .await?
        {
            self.end_typing(conversation, user).await;
        }
        let event = OfflineEvent {
            user_id: &user.id,
            last_seen_at: format_time(&last_seen),
        };
        self.tell_contacts(&user.id, ev::USER_OFFLINE, &event).await;
        Ok(())
    }

    /// One round of cluster membership: renew this node's heartbeat (valid
    /// for `node_ttl`), then sweep nodes whose heartbeat lapsed and announce
    /// `user-offline` for every user they leave without a device. Each such
    /// user is claimed by exactly one node, so each offline is announced once.
    #[instrument(skip_all)]
    ///
    /// Shared state that lost this node (swept after an outage longer than
    /// the node TTL, or a Redis that restarted empty) gets its live sockets
    /// again, and disconnections that could not be recorded are retried.
    pub async fn cluster_membership_once(
        &self,
        node_ttl: std::time::Duration,
    ) -> ServiceResult<usize> {
        let now = now_unix_millis();
        if self.ephemeral().presence.heartbeat(now, node_ttl).await? {
            self.record_local_sockets_again().await;
        }
        for (user, socket_id) in self.inner.pending_disconnects.take() {
            if let Err(e) = self.retry_disconnection(&user, &socket_id).await {
                tracing::debug!(error = %e, "disconnection still not recorded; kept for later");
            }
        }
        let swept = self.ephemeral().presence.sweep_dead_nodes(now).await?;
        self.announce_offline(&swept.users).await;
        if !swept.nodes.is_empty() {
            tracing::info!(
                nodes = ?swept.nodes,
                users = swept.users.len(),
                "dead nodes swept; their users without another device went offline"
            );
            // A dead node may have committed changes it never announced:
            // the clients here learn each conversation's latest number.
            if let Err(e) = self.tell_local_rooms().await {
                warn!(error = %e, "latest numbers not told after a node died");
            }
        }
        Ok(swept.users.len())
    }

    /// Before serving: forgets the sockets an earlier process with this node
    /// id left in shared state (a restarted pod keeps its name) and
    /// announces the users it leaves without a device.
    #[instrument(skip_all)]
    pub async fn forget_previous_life(&self) -> ServiceResult<usize> {
        let gone = self
            .ephemeral()
            .presence
            .forget_own_sockets(now_unix_millis())
            .await?;
        self.announce_offline(&gone).await;
        if !gone.is_empty() {
            tracing::info!(
                users = gone.len(),
                "users left by this node's previous process went offline"
            );
        }
        Ok(gone.len())
    }

    async fn announce_offline(&self, gone: &[(UserId, DateTime<Utc>)]) {
        for (user, last_seen) in gone {
            let event = OfflineEvent {
                user_id: user,
                last_seen_at: format_time(last_seen),
            };
            self.tell_contacts(user, ev::USER_OFFLINE, &event).await;
        }
    }

    /// Records every socket of this node in shared state again; users who
    /// read offline meanwhile are announced online.
    async fn record_local_sockets_again(&self) {
        let sockets = self.fanout().local_sockets();
        let mut recorded = 0;
        for (socket_id, user) in &sockets {
            match self
                .ephemeral()
                .presence
                .socket_connected(&user.id, socket_id)
                .await
            {
                Ok(first) => {
                    recorded += 1;
                    if first {
                        let event = OnlineEvent {
                            user_id: &user.id,
                            at: format_time(&domain::now_millis()),
                        };
                        self.tell_contacts(&user.id, ev::USER_ONLINE, &event).await;
                    }
                }
                Err(e) => {
                    warn!(error = %e, "recording this node's sockets again failed; retried at the next registration");
                    break;
                }
            }
        }
        if recorded > 0 {
            tracing::info!(
                sockets = recorded,
                "this node's sockets recorded again in shared state"
            );
        }
    }

    async fn tell_contacts<T: Serialize>(&self, user: &UserId, event: &'static str, payload: &T) {
        match self.store().conversations.contacts(user).await {
            Ok(contacts) if !contacts.is_empty() => {
                let rooms = contacts.iter().map(rooms::user).collect();
                self.emit(Audience::rooms(rooms), event, payload).await;
            }
            Ok(_) => {}
            Err(e) => {
                warn!(error = %e, event, "contacts unavailable; presence change not announced")
            }
        }
    }
}
