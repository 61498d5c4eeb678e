//! The fanout of a node whose Socket.IO instance is built after its service.

use std::sync::OnceLock;

use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use tracing::warn;

use crate::fanout::{Audience, Delivered, Fanout, SioFanout};

/// The service is built before the Socket.IO instance whose state holds it,
/// so its fanout is bound to that instance right after.
pub(super) struct LateFanout<A: Adapter> {
    inner: OnceLock<SioFanout<A>>,
}

impl<A: Adapter> Default for LateFanout<A> {
    fn default() -> Self {
        Self {
            inner: OnceLock::new(),
        }
    }
}

impl<A: Adapter> LateFanout<A> {
    pub(super) fn bind(&self, io: SocketIo<A>) {
        if self.inner.set(SioFanout::new(io)).is_err() {
            warn!("fanout bound twice; keeping the first Socket.IO instance");
        }
    }
}

#[async_trait::async_trait]
impl<A: Adapter> Fanout for LateFanout<A> {
    async fn emit(
        &self,
        audience: Audience,
        event: &'static str,
        payload: serde_json::Value,
    ) -> Delivered {
        match self.inner.get() {
            Some(f) => f.emit(audience, event, payload).await,
            None => Delivered::ThisNodeOnly,
        }
    }

    fn emit_local(&self, room: String, event: &'static str, payload: &serde_json::Value) {
        if let Some(f) = self.inner.get() {
            f.emit_local(room, event, payload);
        }
    }

    async fn local_rooms(&self) -> Vec<String> {
        match self.inner.get() {
            Some(f) => f.local_rooms().await,
            None => Vec::new(),
        }
    }

    fn emit_to_socket(&self, socket_id: &str, event: &'static str, payload: &serde_json::Value) {
        if let Some(f) = self.inner.get() {
            f.emit_to_socket(socket_id, event, payload);
        }
    }

    async fn join(&self, socket_id: &str, room: String) {
        if let Some(f) = self.inner.get() {
            f.join(socket_id, room).await;
        }
    }

    async fn leave(&self, socket_id: &str, room: String) {
        if let Some(f) = self.inner.get() {
            f.leave(socket_id, room).await;
        }
    }

    fn local_sockets(&self) -> Vec<(String, crate::auth::User)> {
        self.inner
            .get()
            .map(Fanout::local_sockets)
            .unwrap_or_default()
    }
}
