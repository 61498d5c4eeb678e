//! `ServiceError`: every way a use case can fail, and the one mapping from
//! failures to the contract's error codes, shared by both front doors.

use crate::domain::ValidationError;
use crate::ephemeral::EphemeralError;
use crate::protocol::ErrorCode;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// Does not exist, or the caller may not know it exists: both read the same.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A participant doing what they may not.
    #[error("{0}")]
    Forbidden(&'static str),
    /// Past a budget: the user's sends or creations, the socket's events or
    /// events in flight, the user's HTTP requests.
    #[error("too many requests, slow down")]
    RateLimited,
    #[error("storage is unavailable, nothing was written; retry later")]
    Unavailable(#[source] StoreError),
    /// A write whose commit may or may not have happened: a retry with the
    /// same `clientMessageId` settles it (and announces it if it was).
    #[error(
        "storage did not confirm the write: it may have been stored; retry with the same clientMessageId"
    )]
    OutcomeUnknown(#[source] StoreError),
    /// The node has as many sends in progress as it takes: shedding this one
    /// keeps the accepted ones fast (and their cross-node deliveries within
    /// their deadline) instead of queueing everything.
    #[error("this node is at capacity, nothing was written; retry later")]
    Overloaded,
    #[error("token expired")]
    TokenExpired,
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ServiceError {
    /// PROTOCOL.md §2: the code a client sees for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Validation(_) => ErrorCode::Validation,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::RateLimited => ErrorCode::RateLimited,
            Self::Unavailable(_) | Self::Overloaded => ErrorCode::Unavailable,
            Self::OutcomeUnknown(_) => ErrorCode::UnknownOutcome,
            Self::TokenExpired => ErrorCode::TokenExpired,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    /// True for refusals — of the client's request, or of work beyond the
    /// node's capacity — which are logged at debug; false for failures of
    /// the node's dependencies or of the node itself, logged as errors. A
    /// shed send is counted (`parloir_sends_shed_total`) rather than logged
    /// as an error: under overload there would be one per refused send.
    pub fn is_refusal(&self) -> bool {
        !matches!(
            self,
            Self::Unavailable(_) | Self::OutcomeUnknown(_) | Self::Internal(_)
        )
    }
}

impl From<StoreError> for ServiceError {
    /// Every store failure a use case meets passes here, so this is where it is counted.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable { .. } => {
                crate::instruments::store_error(crate::instruments::StoreFailure::Unavailable);
                Self::Unavailable(e)
            }
            StoreError::OutcomeUnknown { .. } => {
                crate::instruments::store_error(crate::instruments::StoreFailure::OutcomeUnknown);
                Self::OutcomeUnknown(e)
            }
            StoreError::ClientMessageIdReused => Self::Validation(ValidationError::new(
                "clientMessageId",
                "was already used for another conversation",
            )),
            StoreError::Query { .. } | StoreError::Corrupt { .. } => {
                crate::instruments::store_error(crate::instruments::StoreFailure::Query);
                Self::Internal(Box::new(e))
            }
        }
    }
}

impl From<EphemeralError> for ServiceError {
    fn from(e: EphemeralError) -> Self {
        Self::Internal(Box::new(e))
    }
}
