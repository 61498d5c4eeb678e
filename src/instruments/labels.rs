//! The label values of metric families whose series are known in advance:
//! each enum lists them all (`ALL`), so every series is exposed at zero from
//! the first scrape.

/// Why a node refused work: the `reason` of `parloir_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    SendRate,
    CreateRate,
    EventRate,
    EventsInFlight,
    HttpRate,
    HandshakeRate,
    SocketsPerUser,
}

impl Refusal {
    pub const ALL: [Self; 7] = [
        Self::SendRate,
        Self::CreateRate,
        Self::EventRate,
        Self::EventsInFlight,
        Self::HttpRate,
        Self::HandshakeRate,
        Self::SocketsPerUser,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            Self::SendRate => "send_rate",
            Self::CreateRate => "create_rate",
            Self::EventRate => "event_rate",
            Self::EventsInFlight => "events_in_flight",
            Self::HttpRate => "http_rate",
            Self::HandshakeRate => "handshake_rate",
            Self::SocketsPerUser => "sockets_per_user",
        }
    }
}

/// How a store operation failed: the `kind` of `parloir_store_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFailure {
    /// The store could not be reached in time; nothing was written.
    Unavailable,
    /// The store answered with an error or data this node cannot read.
    Query,
    /// A write got no answer in time: it may or may not have committed.
    OutcomeUnknown,
}

impl StoreFailure {
    pub const ALL: [Self; 3] = [Self::Unavailable, Self::Query, Self::OutcomeUnknown];

    pub const fn label(self) -> &'static str {
        match self {
            Self::Unavailable => "unavailable",
            Self::Query => "query",
            Self::OutcomeUnknown => "outcome_unknown",
        }
    }
}

/// What happened to a notification: the `outcome` of `parloir_notifications_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationOutcome {
    /// Messages for an offline recipient were gathered into a notification.
    Gathered,
    Sent,
    /// An attempt failed and another is scheduled.
    Retried,
    /// Given up for good (refused, or out of attempts).
    Dead,
    /// Not needed any more (read in time, recipient online, no address…).
    Cancelled,
}

impl NotificationOutcome {
    pub const ALL: [Self; 5] = [
        Self::Gathered,
        Self::Sent,
        Self::Retried,
        Self::Dead,
        Self::Cancelled,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            Self::Gathered => "gathered",
            Self::Sent => "sent",
            Self::Retried => "retried",
            Self::Dead => "dead",
            Self::Cancelled => "cancelled",
        }
    }
}

/// What the retention job did to a row: the `action` of `parloir_retention_rows_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionAction {
    /// A conversation archived.
    Archived,
    /// A soft-deleted message's content and attachments erased.
    Purged,
    /// A message deleted for good.
    Deleted,
    /// A settled offline notification forgotten.
    Forgotten,
}

impl RetentionAction {
    pub const ALL: [Self; 4] = [Self::Archived, Self::Purged, Self::Deleted, Self::Forgotten];

    pub const fn label(self) -> &'static str {
        match self {
            Self::Archived => "archived",
            Self::Purged => "purged",
            Self::Deleted => "deleted",
            Self::Forgotten => "notifications_forgotten",
        }
    }
}

/// How a retention run ended: the `outcome` of `parloir_retention_runs_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionOutcome {
    Completed,
    /// Another node held the retention lock.
    Skipped,
    /// The node drained in the middle of the run.
    Stopped,
    Failed,
}

impl RetentionOutcome {
    pub const ALL: [Self; 4] = [Self::Completed, Self::Skipped, Self::Stopped, Self::Failed];

    pub const fn label(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Skipped => "skipped",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
        }
    }
}
