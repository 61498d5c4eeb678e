//! Path extractors that parse ids at the door: a malformed id is the API's
//! `VALIDATION` error like any other bad input, and handlers receive domain
//! ids, never raw strings.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;

use super::ApiError;
use crate::domain::{ConversationId, MessageId, UserId};

/// The `{id}` of a route under `/conversations/{id}`.
pub(super) struct ConversationPath(pub ConversationId);

/// The `{id}` of `/messages/{id}`.
pub(super) struct MessagePath(pub MessageId);

/// The `{userId}` of `/me/blocks/{userId}`.
pub(super) struct UserPath(pub UserId);

impl<S: Send + Sync> FromRequestParts<S> for UserPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await?;
        Ok(Self(UserId::parse("userId", &raw)?))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ConversationPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await?;
        Ok(Self(ConversationId::parse("id", &raw)?))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for MessagePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await?;
        Ok(Self(MessageId::parse("id", &raw)?))
    }
}
