//! Which room channels a server subscribes to: exactly the rooms it holds at
//! least one socket in.
//!
//! socketioxide's `Socket::join`, `leave` and the removal of a closed socket
//! change the local rooms without telling the adapter, so the adapter cannot
//! rely on being told. Instead one task per namespace owns the subscriptions
//! and *reconciles*: whenever a room may have changed it compares "has local
//! members" (read from the local adapter at that moment) with "subscribed",
//! and subscribes or unsubscribes. Being asked too often is harmless; a room
//! it is never asked about is caught by the periodic sweep of every
//! subscribed room, and by the receive path, which asks about a room when a
//! broadcast for it finds no local socket.
//!
//! Requests are batched: whatever is queued when the task wakes up is
//! reconciled together, so a burst of joins costs one round of Redis
//! commands. A join through the adapter (`socket.local().join(..).await`)
//! waits for its room's subscription, so no broadcast sent after the join
//! returns can miss the server.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::interfaces::{ClientLike, PubsubInterface};
use fred::types::config::Options;
use futures_util::future::join_all;
use socketioxide_core::adapter::Room;
use tokio::sync::{mpsc, oneshot};

use crate::channels::Channels;
use crate::dispatch::Shared;
use crate::stats::Stats;

/// Requests reconciled in one round at most.
const MAX_BATCH: usize = 1024;
/// Subscriptions in flight at once when re-subscribing everything.
const RESUBSCRIBE_CONCURRENCY: usize = 256;

/// What the reconciliation reads: whether a room has local sockets.
pub(crate) trait LocalRooms: Send + Sync + 'static {
    fn has_members(&self, room: &Room) -> bool;
}

enum Command {
    /// Reconcile these rooms; tell `done` once their subscriptions are settled.
    Sync {
        rooms: Vec<Room>,
        done: Option<oneshot::Sender<Result<(), fred::error::Error>>>,
    },
    /// The connection was re-established: subscribe everything again.
    Resubscribe,
    /// Unsubscribe everything and stop.
    Close(oneshot::Sender<()>),
}

/// The handle of a namespace's subscription task.
pub(crate) struct Interest {
    tx: mpsc::UnboundedSender<Command>,
    /// Taken by `start`.
    rx: Mutex<Option<mpsc::UnboundedReceiver<Command>>>,
}

impl Interest {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }

    /// Starts the task; `fixed` channels (the namespace-wide and the
    /// server's own) are subscribed first and kept for the task's life.
    pub async fn start(
        &self,
        shared: &Shared,
        channels: Channels,
        fixed: Vec<String>,
        members: Weak<dyn LocalRooms>,
    ) -> Result<(), fred::error::Error> {
        let options = Options {
            // While the connection is down, failing at once is enough: every
            // channel is subscribed again when it comes back.
            fail_fast: true,
            timeout: Some(shared.config.request_timeout),
            ..Options::default()
        };
        let client = shared.client.with_options(&options);
        for channel in &fixed {
            client.ssubscribe(channel.as_str()).await?;
        }
        let rx = self.rx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(rx) = rx {
            let manager = Manager {
                client: shared.client.clone(),
                options,
                channels,
                fixed,
                members,
                stats: shared.stats.clone(),
                subscribed: HashSet::new(),
                failed: HashSet::new(),
            };
            // The manager and its queue outlive a run: a run started again
            // (after a panic, by a supervising spawner) resumes with them,
            // and first subscribes everything again in case the failed run
            // left a subscription half made.
            let state = Arc::new(tokio::sync::Mutex::new((manager, rx)));
            let sweep_every = shared.config.sweep_interval;
            let mut runs = 0u64;
            shared.config.spawner.spawn(
                "adapter_rooms",
                Box::new(move || {
                    let (state, again) = (state.clone(), runs > 0);
                    runs += 1;
                    Box::pin(async move {
                        let mut state = state.lock().await;
                        let (manager, rx) = &mut *state;
                        if again {
                            manager.resubscribe_all().await;
                        }
                        manager.run(rx, sweep_every).await;
                    })
                }),
            );
        }
        Ok(())
    }

    /// Reconciles `rooms` and waits until their subscriptions are settled.
    pub async fn sync_and_wait(&self, rooms: Vec<Room>) -> Result<(), fred::error::Error> {
        let (done, settled) = oneshot::channel();
        if self
            .tx
            .send(Command::Sync {
                rooms,
                done: Some(done),
            })
            .is_err()
        {
            return Ok(()); // closed: the namespace is going away
        }
        settled.await.unwrap_or(Ok(()))
    }

    /// Reconciles `rooms` in the background.
    pub fn sync(&self, rooms: Vec<Room>) {
        let _ = self.tx.send(Command::Sync { rooms, done: None });
    }

    pub fn resubscribe(&self) {
        let _ = self.tx.send(Command::Resubscribe);
    }

    /// Unsubscribes every channel of the namespace and stops the task.
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.tx.send(Command::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }
}

struct Manager {
    client: SubscriberClient,
    options: Options,
    channels: Channels,
    fixed: Vec<String>,
    members: Weak<dyn LocalRooms>,
    stats: std::sync::Arc<Stats>,
    /// Rooms the server wants Redis to deliver (subscribed, or to be
    /// subscribed again after a reconnect).
    subscribed: HashSet<Room>,
    /// Rooms of `subscribed` whose last SSUBSCRIBE failed: retried at the sweep.
    failed: HashSet<Room>,
}

impl Manager {
    async fn run(&mut self, rx: &mut mpsc::UnboundedReceiver<Command>, sweep_every: Duration) {
        let mut sweep = tokio::time::interval(sweep_every);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        sweep.tick().await; // the first tick is immediate
        loop {
            tokio::select! {
                command = rx.recv() => {
                    let Some(command) = command else { break };
                    let mut batch = vec![command];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(c) => batch.push(c),
                            Err(_) => break,
                        }
                    }
                    if let Some(closed) = self.apply(batch).await {
                        self.unsubscribe_all().await;
                        let _ = closed.send(());
                        break;
                    }
                }
                _ = sweep.tick() => {
                    let mut rooms: Vec<Room> = self.subscribed.iter().cloned().collect();
                    // A failed room is retried even though it reads as subscribed.
                    let retry: Vec<Room> = self.failed.drain().collect();
                    for room in &retry {
                        self.subscribed.remove(room);
                    }
                    self.stats.rooms_changed(0, retry.len() as u64);
                    rooms.extend(retry);
                    let _ = self.reconcile(rooms).await;
                }
            }
        }
    }

    /// Applies a batch; returns the close acknowledgement if the batch closes.
    async fn apply(&mut self, batch: Vec<Command>) -> Option<oneshot::Sender<()>> {
        let mut rooms = Vec::new();
        let mut waiters = Vec::new();
        let mut resubscribe = false;
        let mut close = None;
        for command in batch {
            match command {
                Command::Sync { rooms: r, done } => {
                    rooms.extend(r);
                    waiters.extend(done);
                }
                Command::Resubscribe => resubscribe = true,
                Command::Close(done) => close = Some(done),
            }
        }
        if close.is_some() {
            return close;
        }
        if resubscribe {
            self.resubscribe_all().await;
        }
        let result = self.reconcile(rooms).await;
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
        None
    }

    /// Subscribes the rooms that have local sockets and are not subscribed,
    /// unsubscribes those that are subscribed and have none.
    async fn reconcile(&mut self, rooms: Vec<Room>) -> Result<(), fred::error::Error> {
        let client = self.client.with_options(&self.options);
        let Some(members) = self.members.upgrade() else {
            return Ok(()); // the namespace is gone
        };
        let mut seen = HashSet::new();
        let (mut join, mut leave) = (Vec::new(), Vec::new());
        for room in rooms {
            if !seen.insert(room.clone()) {
                continue;
            }
            match (members.has_members(&room), self.subscribed.contains(&room)) {
                (true, false) => join.push(room),
                (false, true) => leave.push(room),
                _ => {}
            }
        }
        drop(members);

        let mut result = Ok(());
        let subscribed = join_all(
            join.iter()
                .map(|room| client.ssubscribe(self.channels.room(room))),
        )
        .await;
        let mut failures = 0;
        for (room, outcome) in join.into_iter().zip(subscribed) {
            if let Err(e) = outcome {
                failures += 1;
                self.failed.insert(room.clone());
                if result.is_ok() {
                    result = Err(e);
                }
            }
            // Wanted either way: a failed room is retried at the next sweep
            // or reconnect, whichever comes first.
            if self.subscribed.insert(room) {
                self.stats.rooms_changed(1, 0);
            }
        }
        if let Err(e) = &result {
            self.stats.subscribe_failed(failures);
            tracing::warn!(rooms = failures, error = %e, "room subscriptions failed; retried later");
        }

        let unsubscribed = join_all(
            leave
                .iter()
                .map(|room| client.sunsubscribe(self.channels.room(room))),
        )
        .await;
        for (room, outcome) in leave.into_iter().zip(unsubscribed) {
            // On failure the connection is gone, and its subscriptions with it.
            if let Err(e) = outcome {
                tracing::debug!(error = %e, "room unsubscription failed");
            }
            self.failed.remove(&room);
            if self.subscribed.remove(&room) {
                self.stats.rooms_changed(0, 1);
            }
        }
        result
    }

    async fn resubscribe_all(&mut self) {
        let client = self.client.with_options(&self.options);
        let mut channels = self.fixed.clone();
        channels.extend(self.subscribed.iter().map(|room| self.channels.room(room)));
        let mut failed = 0;
        for chunk in channels.chunks(RESUBSCRIBE_CONCURRENCY) {
            let outcomes = join_all(chunk.iter().map(|c| client.ssubscribe(c.as_str()))).await;
            failed += outcomes.iter().filter(|o| o.is_err()).count();
        }
        if failed > 0 {
            self.stats.subscribe_failed(failed as u64);
            tracing::warn!(
                channels = failed,
                "re-subscribing after a reconnect failed; retried at the next reconnect or sweep"
            );
            // Retry the rooms at the next sweep (fixed channels at the next reconnect).
            self.failed.extend(self.subscribed.iter().cloned());
        } else {
            tracing::info!(
                channels = channels.len(),
                "adapter channels re-subscribed after a reconnect"
            );
        }
    }

    async fn unsubscribe_all(&mut self) {
        let client = self.client.with_options(&self.options);
        let mut channels = self.fixed.clone();
        channels.extend(self.subscribed.iter().map(|room| self.channels.room(room)));
        for chunk in channels.chunks(RESUBSCRIBE_CONCURRENCY) {
            let _ = join_all(chunk.iter().map(|c| client.sunsubscribe(c.as_str()))).await;
        }
        self.stats.rooms_changed(0, self.subscribed.len() as u64);
        self.subscribed.clear();
        self.failed.clear();
    }
}
