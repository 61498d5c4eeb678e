//! The channels offline notifications leave by: a signed webhook to the
//! business's back-end, and e-mail. Each is a [`Courier`]: it delivers one
//! [`Outgoing`] notification and says whether to retry. Which notification
//! to send, when and to whom is the service's business
//! (`service/notifications.rs`); couriers only speak HTTP and SMTP.

use async_trait::async_trait;

use crate::domain::{Channel, ConversationId};
use crate::protocol::UnreadNotification;

pub mod email;
pub mod webhook;

pub use email::{EmailCourier, SmtpSettings};
pub use webhook::{WebhookCourier, WebhookSettings};

/// One notification, ready to leave.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The webhook body; e-mails say the same in words.
    pub body: UnreadNotification,
    /// Where an e-mail goes (`None` for webhooks).
    pub email: Option<String>,
    /// The conversation's title, when it has one.
    pub conversation_title: Option<String>,
    pub conversation_id: ConversationId,
    /// When this attempt is made (the `webhook-timestamp`).
    pub at: chrono::DateTime<chrono::Utc>,
}

/// How one attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// Worth another attempt later (5xx, timeout, connection refused).
    Retry(String),
    /// The receiver refused for good (4xx, a rejected address).
    Refused(String),
}

#[async_trait]
pub trait Courier: Send + Sync + 'static {
    fn channel(&self) -> Channel;

    async fn deliver(&self, notification: &Outgoing) -> Delivery;
}
