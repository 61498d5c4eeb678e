//! Counters of one server's adapter traffic, shared by all its namespaces.
//! The crate has no metrics backend of its own: read a [`StatsSnapshot`] and
//! export it however the application exports metrics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Stats {
    published: AtomicU64,
    received: AtomicU64,
    loopback: AtomicU64,
    dropped: AtomicU64,
    malformed: AtomicU64,
    subscribe_failures: AtomicU64,
    subscribed_rooms: AtomicU64,
}

/// A reading of [`Stats`]. Every field but `subscribed_rooms` only grows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Messages this server published (one per room copy of a broadcast).
    pub published: u64,
    /// Messages this server received from Redis, its own included.
    pub received: u64,
    /// Received messages this server had published itself (dropped unread).
    pub loopback: u64,
    /// Messages lost because this server read them too slowly.
    pub dropped: u64,
    /// Received messages that were not readable adapter frames.
    pub malformed: u64,
    /// Room subscriptions that failed (retried later).
    pub subscribe_failures: u64,
    /// Rooms this server is subscribed to right now, all namespaces.
    pub subscribed_rooms: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            published: self.published.load(Relaxed),
            received: self.received.load(Relaxed),
            loopback: self.loopback.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
            subscribe_failures: self.subscribe_failures.load(Relaxed),
            subscribed_rooms: self.subscribed_rooms.load(Relaxed),
        }
    }

    pub(crate) fn published(&self, n: u64) {
        self.published.fetch_add(n, Relaxed);
    }
    pub(crate) fn received(&self) {
        self.received.fetch_add(1, Relaxed);
    }
    pub(crate) fn loopback(&self) {
        self.loopback.fetch_add(1, Relaxed);
    }
    pub(crate) fn dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Relaxed);
    }
    pub(crate) fn malformed(&self) {
        self.malformed.fetch_add(1, Relaxed);
    }
    pub(crate) fn subscribe_failed(&self, n: u64) {
        self.subscribe_failures.fetch_add(n, Relaxed);
    }
    pub(crate) fn rooms_changed(&self, added: u64, removed: u64) {
        self.subscribed_rooms.fetch_add(added, Relaxed);
        self.subscribed_rooms.fetch_sub(removed, Relaxed);
    }
}
