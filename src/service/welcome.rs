//! What follows a handshake, in batches: the token's `email` and `name`
//! remembered, `user-online` to the contacts of users whose first device
//! connected, and the unread totals to each new socket.
//!
//! A reconnect storm (a node died, its sockets come back at thousands a
//! second) made each handshake wait on store round trips of its own and
//! ran the pool dry. The handshake now only admits the socket (presence,
//! one shared-state call) and queues its welcome; one task takes what is
//! queued, up to `BATCH`, and does each step once per batch: one upsert of
//! the changed claims, one contacts query, one read of the present unread
//! counters and one recount of the missing ones. When the store fails, the
//! batch's unanswered welcomes are tried again after `RETRY_AFTER` (a
//! socket that left meanwhile is skipped by the emit), so a socket gets its
//! totals when they are known and an online is announced exactly once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{instrument, warn};

use super::Messaging;
use super::reads::unread_update;
use crate::auth::User;
use crate::domain::{ContactClaims, UserId, format_time, now_millis};
use crate::fanout::Audience;
use crate::protocol::{OnlineEvent, ev, rooms};

/// Most welcomes handled together.
const BATCH: usize = 256;
/// Welcomes waiting; beyond, `on_connect` tasks wait for room (the
/// handshakes themselves are already answered).
const QUEUE: usize = 16 * 1024;
/// How long a batch whose store calls failed waits before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Most attempts at one welcome; then it is dropped with a warning.
const MAX_ATTEMPTS: u32 = 30;

/// One connected socket's welcome.
pub(super) struct Welcome {
    user: User,
    socket_id: String,
    /// The user's first device: contacts are told `user-online`.
    first: bool,
    attempts: u32,
}

/// The queue's sending side (the service's) and receiving side (the task's).
pub(super) struct Welcomes {
    tx: mpsc::Sender<Welcome>,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Welcome>>>,
}

impl Welcomes {
    pub(super) fn new() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Self {
            tx,
            rx: Arc::new(tokio::sync::Mutex::new(rx)),
        }
    }
}

impl Messaging {
    /// A socket is connected (its presence recorded): queues its welcome.
    /// Waits only when the queue is full.
    pub async fn welcome(&self, user: &User, socket_id: &str, first: bool) {
        let welcome = Welcome {
            user: user.clone(),
            socket_id: socket_id.to_owned(),
            first,
            attempts: 0,
        };
        if self.inner.welcomes.tx.send(welcome).await.is_err() {
            warn!("the welcome queue is closed; socket left without its unread totals");
        }
    }

    /// Welcomes queued sockets, a batch at a time, until `stop`.
    pub async fn welcome_queued(&self, stop: CancellationToken) {
        let mut rx = self.inner.welcomes.rx.lock().await;
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let received = tokio::select! {
                () = stop.cancelled() => return,
                n = rx.recv_many(&mut batch, BATCH) => n,
            };
            if received == 0 {
                return;
            }
            let retry = self.welcome_batch(std::mem::take(&mut batch)).await;
            if !retry.is_empty() {
                let again = self.inner.welcomes.tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(RETRY_AFTER).await;
                    for welcome in retry {
                        if again.send(welcome).await.is_err() {
                            return;
                        }
                    }
                });
            }
        }
    }

    /// One batch; returns the welcomes to try again.
    #[instrument(skip_all, fields(batch.size = batch.len()))]
    async fn welcome_batch(&self, batch: Vec<Welcome>) -> Vec<Welcome> {
        let claims: Vec<ContactClaims> = batch
            .iter()
            .filter(|w| w.attempts == 0)
            .filter_map(|w| self.claims_to_remember(&w.user))
            .collect();
        if !claims.is_empty() {
            match self
                .store()
                .notifications
                .remember_contacts(&claims, now_millis())
                .await
            {
                Ok(()) => claims.iter().for_each(|c| self.claims_remembered(c)),
                Err(e) => {
                    warn!(error = %e, users = claims.len(), "tokens' e-mail and name not remembered")
                }
            }
        }
        let announced = self.announce_first_devices(&batch).await;
        let counted = self.send_unread_totals(&batch).await;
        let mut retry = Vec::new();
        for (i, welcome) in batch.into_iter().enumerate() {
            let owes_online = welcome.first && !announced.contains(&welcome.user.id);
            let owes_totals = !counted.contains(&i);
            if !owes_online && !owes_totals {
                continue;
            }
            if welcome.attempts + 1 >= MAX_ATTEMPTS {
                warn!(user.id = %welcome.user.id, "a socket's welcome given up after {MAX_ATTEMPTS} attempts");
                continue;
            }
            retry.push(Welcome {
                // Told once: a retry only owes what failed.
                first: owes_online,
                attempts: welcome.attempts + 1,
                ..welcome
            });
        }
        retry
    }

    /// `user-online` to the contacts of every first device, from one
    /// contacts query. Returns the users announced.
    async fn announce_first_devices(&self, batch: &[Welcome]) -> HashSet<UserId> {
        let firsts: Vec<&User> = batch.iter().filter(|w| w.first).map(|w| &w.user).collect();
        let mut announced = HashSet::new();
        if firsts.is_empty() {
            return announced;
        }
        let ids: Vec<UserId> = firsts.iter().map(|u| u.id.clone()).collect();
        let contacts = match self.store().conversations.contacts_of(&ids).await {
            Ok(contacts) => contacts,
            Err(e) => {
                warn!(error = %e, users = ids.len(), "contacts unavailable; onlines told later");
                return announced;
            }
        };
        let at = format_time(&now_millis());
        for user in firsts {
            if !announced.insert(user.id.clone()) {
                continue; // two first devices of one user in a batch: told once
            }
            let Some(contacts) = contacts.get(&user.id) else {
                continue;
            };
            let event = OnlineEvent {
                user_id: &user.id,
                at: at.clone(),
            };
            let rooms = contacts.iter().map(rooms::user).collect();
            self.emit(Audience::rooms(rooms), ev::USER_ONLINE, &event)
                .await;
        }
        announced
    }

    /// The unread totals to every socket of the batch: the present counters
    /// in one shared-state read, the missing ones recounted in one store
    /// query (and stored). Returns the batch positions told.
    async fn send_unread_totals(&self, batch: &[Welcome]) -> HashSet<usize> {
        let mut users: Vec<UserId> = batch.iter().map(|w| w.user.id.clone()).collect();
        users.sort();
        users.dedup();
        let mut counts = match self.ephemeral().unread.unread_of(&users).await {
            Ok(present) => present,
            Err(e) => {
                warn!(error = %e, "unread counters unavailable; recounting");
                HashMap::new()
            }
        };
        let missing: Vec<UserId> = users
            .into_iter()
            .filter(|u| !counts.contains_key(u))
            .collect();
        if !missing.is_empty() {
            match self.store().cursors.unread_counts_of(&missing).await {
                Ok(mut recounted) => {
                    for user in missing {
                        let theirs = recounted.remove(&user).unwrap_or_default();
                        if let Err(e) = self.ephemeral().unread.replace_unread(&user, &theirs).await
                        {
                            warn!(error = %e, "unread counters not stored");
                        }
                        counts.insert(user, theirs);
                    }
                }
                Err(e) => {
                    warn!(error = %e, users = missing.len(), "unread totals unavailable; sent later")
                }
            }
        }
        let mut told = HashSet::new();
        for (i, welcome) in batch.iter().enumerate() {
            if let Some(theirs) = counts.get(&welcome.user.id) {
                self.emit_to_socket(
                    &welcome.socket_id,
                    ev::UNREAD_COUNT_UPDATED,
                    &unread_update(theirs, None),
                );
                told.insert(i);
            }
        }
        told
    }
}
