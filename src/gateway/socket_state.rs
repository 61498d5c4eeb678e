//! What the node keeps for each authenticated socket, as the socket's one
//! extension. socketioxide stores each extension boxed in a map of the
//! socket's own, and its `Extension` extractor clones the value out on every
//! event: behind one `Arc`, an event costs a reference count instead of a
//! copy of the user's claims, and the socket's map holds one entry instead
//! of four. (Measured against the four: no change beyond noise in RSS per
//! idle socket or CPU per message; README, Performance.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::auth::User;
use crate::budget::SocketBudget;
use crate::config::Budgets;

pub struct SocketState {
    /// The verified claims of the handshake's token.
    pub user: User,
    /// The socket's event rate and events in progress.
    pub budget: SocketBudget,
    /// Whether the socket was the user's first device when its presence was
    /// recorded (set once, before the CONNECT answer goes out).
    first_device: AtomicBool,
}

impl SocketState {
    pub fn new(user: User, budgets: &Budgets) -> Arc<Self> {
        Arc::new(Self {
            user,
            budget: SocketBudget::new(budgets),
            first_device: AtomicBool::new(false),
        })
    }

    pub fn set_first_device(&self, first: bool) {
        // Written by the connect middleware, read by the connect handler,
        // which socketioxide spawns after the middleware has returned: the
        // spawn orders the two.
        self.first_device.store(first, Ordering::Relaxed);
    }

    pub fn is_first_device(&self) -> bool {
        self.first_device.load(Ordering::Relaxed)
    }
}
