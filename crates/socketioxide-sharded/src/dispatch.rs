//! What all the namespaces of one server share: the Redis connection, the
//! configuration, the counters, and the one task that reads every message
//! Redis pushes and hands it to its namespace.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};

use fred::clients::SubscriberClient;
use fred::interfaces::EventInterface;
use fred::types::Value;
use tokio::sync::broadcast::error::RecvError;

use crate::ShardedConfig;
use crate::channels::namespace_of;
use crate::stats::Stats;

/// A namespace's side of the dispatcher.
pub(crate) trait Inbox: Send + Sync + 'static {
    /// A message arrived on one of the namespace's channels.
    fn receive(&self, frame: &[u8]);
    /// The connection to Redis (or to a shard) was re-established.
    fn resubscribe(&self);
}

pub(crate) struct Shared {
    pub client: SubscriberClient,
    pub config: ShardedConfig,
    pub stats: Arc<Stats>,
    inboxes: RwLock<HashMap<String, Arc<dyn Inbox>>>,
}

impl Shared {
    /// Starts reading the client's messages and reconnections.
    pub fn start(client: SubscriberClient, config: ShardedConfig) -> Arc<Self> {
        let shared = Arc::new(Self {
            client,
            config,
            stats: Arc::new(Stats::default()),
            inboxes: RwLock::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&shared);
        shared.config.spawner.spawn(
            "adapter_messages",
            Box::new(move || Box::pin(read_messages(weak.clone()))),
        );
        let weak = Arc::downgrade(&shared);
        shared.config.spawner.spawn(
            "adapter_reconnections",
            Box::new(move || Box::pin(watch_reconnections(weak.clone()))),
        );
        shared
    }

    pub fn register(&self, namespace: &str, inbox: Arc<dyn Inbox>) {
        self.inboxes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(namespace.to_owned(), inbox);
    }

    pub fn deregister(&self, namespace: &str) {
        self.inboxes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(namespace);
    }

    fn inbox(&self, channel: &str) -> Option<Arc<dyn Inbox>> {
        let namespace = namespace_of(&self.config.prefix, channel)?;
        self.inboxes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(namespace)
            .cloned()
    }

    fn inboxes(&self) -> Vec<Arc<dyn Inbox>> {
        self.inboxes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

async fn read_messages(shared: Weak<Shared>) {
    let Some(mut messages) = shared.upgrade().map(|s| s.client.message_rx()) else {
        return;
    };
    loop {
        let received = messages.recv().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match received {
            Ok(message) => {
                shared.stats.received();
                let frame: &[u8] = match &message.value {
                    Value::Bytes(b) => b,
                    Value::String(s) => s.as_bytes(),
                    _ => {
                        shared.stats.malformed();
                        continue;
                    }
                };
                match shared.inbox(&message.channel) {
                    Some(inbox) => inbox.receive(frame),
                    // Another application sharing the prefix, or a namespace
                    // closed a moment ago.
                    None => shared.stats.malformed(),
                }
            }
            Err(RecvError::Lagged(n)) => {
                shared.stats.dropped(n);
                tracing::warn!(
                    messages = n,
                    "adapter messages lost: this server reads them too slowly \
                     (raise the fred client's broadcast_channel_capacity)"
                );
            }
            Err(RecvError::Closed) => return,
        }
    }
}

async fn watch_reconnections(shared: Weak<Shared>) {
    let Some(mut reconnections) = shared.upgrade().map(|s| s.client.reconnect_rx()) else {
        return;
    };
    loop {
        let event = reconnections.recv().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match event {
            Ok(server) => {
                tracing::debug!(%server, "Redis connection re-established");
                shared.inboxes().iter().for_each(|i| i.resubscribe());
            }
            Err(RecvError::Lagged(_)) => shared.inboxes().iter().for_each(|i| i.resubscribe()),
            Err(RecvError::Closed) => return,
        }
    }
}
