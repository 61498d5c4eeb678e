//! `POST /api/v1/conversations/{id}/messages` and `DELETE /api/v1/messages/{id}`.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use serde::Deserialize;

use super::auth::Caller;
use super::extract::{ConversationPath, MessagePath};
use super::{ApiError, HttpState};
use crate::domain::{Attachment, Message, NewMessage};

/// The body of an HTTP send; the conversation comes from the path.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostMessage {
    #[serde(default)]
    pub content: String,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    pub client_message_id: Option<String>,
}

/// `send-message` over HTTP: same validation, idempotency and broadcasts.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/messages", params(("id" = String, Path)), request_body = PostMessage,
    responses((status = 201, body = Message), (status = 400, body = super::ErrorResponse), (status = 404, body = super::ErrorResponse), (status = 429, body = super::ErrorResponse)),
    security(("bearer" = [])))]
pub async fn send(
    State(state): State<HttpState>,
    Caller(user): Caller,
    ConversationPath(conversation): ConversationPath,
    body: Result<Json<PostMessage>, JsonRejection>,
) -> Result<(StatusCode, Json<Message>), ApiError> {
    let Json(body) = body?;
    let new = NewMessage::new(
        conversation,
        &body.content,
        body.attachments,
        body.client_message_id.as_deref(),
        state.service.limits(),
    )?;
    let message = state.service.send_message(&user, new).await?;
    Ok((StatusCode::CREATED, Json(message)))
}

/// The sender soft-deletes their message; the room gets `message-deleted`.
#[utoipa::path(delete, path = "/api/v1/messages/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = super::ErrorResponse), (status = 404, body = super::ErrorResponse)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<HttpState>,
    Caller(user): Caller,
    MessagePath(id): MessagePath,
) -> Result<StatusCode, ApiError> {
    state.service.delete_message(&user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
