//! `/api/v1/conversations…` and `/api/v1/unread`.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::auth::Caller;
use super::extract::ConversationPath;
use super::{ApiError, HttpState};
use crate::domain::{Conversation, ListRequest, NewConversation, PageRequest};
use crate::protocol::{ConversationList, History, ReadReceipt, UnreadReport};
use crate::store::Created;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateConversation {
    pub participant_ids: Vec<String>,
    pub title: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Conversations per page: 1 to 100, default 20.
    pub limit: Option<i64>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
    /// `true`: archived conversations only (idle past the archive age; a new
    /// message un-archives one). Default `false`: the others.
    pub archived: Option<bool>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    pub limit: Option<i64>,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// Creates a conversation (201), or returns the existing one for the same pair (200).
#[utoipa::path(post, path = "/api/v1/conversations", request_body = CreateConversation,
    responses((status = 201, body = Conversation), (status = 200, body = Conversation), (status = 400, body = super::ErrorResponse)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<HttpState>,
    Caller(user): Caller,
    body: Result<Json<CreateConversation>, JsonRejection>,
) -> Result<(StatusCode, Json<Conversation>), ApiError> {
    let Json(body) = body?;
    let new = NewConversation::parse(
        &user.id,
        &body.participant_ids,
        body.title.as_deref(),
        state.service.limits(),
    )?;
    let (conversation, created) = state.service.create_conversation(&user, new).await?;
    let status = if created == Created::New {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(conversation)))
}

/// The caller's conversations, most recent activity first; archived ones
/// only with `archived=true`, and only then.
#[utoipa::path(get, path = "/api/v1/conversations", params(ListQuery),
    responses((status = 200, body = ConversationList)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<HttpState>,
    Caller(user): Caller,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ConversationList>, ApiError> {
    let Query(q) = query?;
    let request = ListRequest::parse(q.limit, q.cursor.as_deref(), q.archived)?;
    Ok(Json(
        state.service.list_conversations(&user, request).await?,
    ))
}

/// A page of history, oldest first (same rules as `join-conversation`).
#[utoipa::path(get, path = "/api/v1/conversations/{id}/messages", params(("id" = String, Path), HistoryQuery),
    responses((status = 200, body = History), (status = 404, body = super::ErrorResponse)), security(("bearer" = [])))]
pub async fn history(
    State(state): State<HttpState>,
    Caller(user): Caller,
    ConversationPath(conversation): ConversationPath,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<History>, ApiError> {
    let Query(q) = query?;
    let page = PageRequest::parse(q.limit, q.before.as_deref(), q.after.as_deref())?;
    Ok(Json(
        state.service.history(&user, conversation, page).await?,
    ))
}

/// Marks the conversation read up to its latest message.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/read", params(("id" = String, Path)),
    responses((status = 200, body = ReadReceipt)), security(("bearer" = [])))]
pub async fn mark_read(
    State(state): State<HttpState>,
    Caller(user): Caller,
    ConversationPath(conversation): ConversationPath,
) -> Result<Json<ReadReceipt>, ApiError> {
    Ok(Json(
        state
            .service
            .mark_conversation_as_read(&user, conversation)
            .await?,
    ))
}

/// Unread counts, recounted from the store; only non-zero conversations are listed.
#[utoipa::path(get, path = "/api/v1/unread", responses((status = 200, body = UnreadReport)), security(("bearer" = [])))]
pub async fn unread(
    State(state): State<HttpState>,
    Caller(user): Caller,
) -> Result<Json<UnreadReport>, ApiError> {
    Ok(Json(state.service.unread(&user).await?))
}
