//! The bearer-token extractor of the HTTP API.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::{ApiError, HttpState};
use crate::auth::{AuthError, User, bearer};
use crate::service::ServiceError;

/// The authenticated caller of an API route.
pub struct Caller(pub User);

impl FromRequestParts<HttpState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &HttpState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
            .ok_or(AuthError::Unauthorized)?;
        let user = state.authenticator.verify(token)?;
        tracing::Span::current().record("user.id", tracing::field::display(&user.id));
        if !state.budget.admit_http(&user.id) {
            crate::instruments::refusal(crate::instruments::Refusal::HttpRate);
            return Err(ServiceError::RateLimited.into());
        }
        state.service.remember_profile(&user).await;
        Ok(Caller(user))
    }
}
