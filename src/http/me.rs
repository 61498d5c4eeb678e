//! `/api/v1/me/…`: the caller's own settings.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;

use super::auth::Caller;
use super::extract::UserPath;
use super::{ApiError, HttpState};
use crate::protocol::{BlockAck, BlockList, NotificationSettings};

/// Turns the caller's offline notification e-mails off or on (they are on
/// until turned off). Webhooks are the business's, not the user's, to stop.
#[utoipa::path(put, path = "/api/v1/me/notifications", request_body = NotificationSettings,
    responses((status = 200, body = NotificationSettings), (status = 400, body = super::ErrorResponse)),
    security(("bearer" = [])))]
pub async fn set_notifications(
    State(state): State<HttpState>,
    Caller(user): Caller,
    body: Result<Json<NotificationSettings>, JsonRejection>,
) -> Result<Json<NotificationSettings>, ApiError> {
    let Json(settings) = body?;
    state
        .service
        .set_email_notifications(&user, settings.email)
        .await?;
    Ok(Json(settings))
}

/// The caller blocks a user (PROTOCOL.md §10): no conversation started by
/// them, no send into their one-to-one conversation, and no presence,
/// typing or read receipts between the two, both ways.
#[utoipa::path(post, path = "/api/v1/me/blocks/{userId}", params(("userId" = String, Path)),
    responses((status = 200, body = BlockAck), (status = 400, body = super::ErrorResponse), (status = 429, body = super::ErrorResponse)),
    security(("bearer" = [])))]
pub async fn block(
    State(state): State<HttpState>,
    Caller(user): Caller,
    UserPath(blocked): UserPath,
) -> Result<Json<BlockAck>, ApiError> {
    Ok(Json(state.service.block_user(&user, blocked).await?))
}

/// The caller lifts a block (a block that does not exist is lifted already).
#[utoipa::path(delete, path = "/api/v1/me/blocks/{userId}", params(("userId" = String, Path)),
    responses((status = 200, body = BlockAck), (status = 400, body = super::ErrorResponse)),
    security(("bearer" = [])))]
pub async fn unblock(
    State(state): State<HttpState>,
    Caller(user): Caller,
    UserPath(blocked): UserPath,
) -> Result<Json<BlockAck>, ApiError> {
    Ok(Json(state.service.unblock_user(&user, blocked).await?))
}

/// Whom the caller blocks, most recent first.
#[utoipa::path(get, path = "/api/v1/me/blocks",
    responses((status = 200, body = BlockList)),
    security(("bearer" = [])))]
pub async fn blocks(
    State(state): State<HttpState>,
    Caller(user): Caller,
) -> Result<Json<BlockList>, ApiError> {
    Ok(Json(state.service.blocks(&user).await?))
}
