//! `/api/v1/me/…`: the caller's own settings.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;

use super::auth::Caller;
use super::{ApiError, HttpState};
use crate::protocol::NotificationSettings;

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
