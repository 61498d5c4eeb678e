//! HTTP error bodies: `{"error": {code, message}}` with the status the code
//! implies (PROTOCOL.md §5). The one place HTTP failures are logged.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::AuthError;
use crate::domain::ValidationError;
use crate::protocol::{ErrorBody, ErrorCode};
use crate::service::ServiceError;

/// A failed request.
#[derive(Debug)]
pub enum ApiError {
    Service(ServiceError),
    Auth(AuthError),
    /// The body is larger than the configured limit.
    TooLarge,
}

/// `{"error": {code, message}}`: every failed request's body, and its schema
/// in the OpenAPI document.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorResponse {
    error: ErrorBody,
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        Self::Service(e)
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self::Service(e.into())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        Self::Auth(e)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::TooLarge;
        }
        let rule = match r {
            JsonRejection::MissingJsonContentType(_) => {
                "must be sent with Content-Type: application/json".to_owned()
            }
            other => other.body_text().chars().take(160).collect(),
        };
        ValidationError::new("body", rule).into()
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ValidationError::new("query", r.body_text().chars().take(160).collect::<String>()).into()
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ValidationError::new("path", r.body_text().chars().take(160).collect::<String>()).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match &self {
            Self::Service(e) => {
                if e.is_refusal() {
                    tracing::debug!(error.code = e.code().as_str(), error = %e, "request refused");
                } else {
                    tracing::error!(
                        error.code = e.code().as_str(),
                        error = e as &dyn std::error::Error,
                        "request failed"
                    );
                }
                (status_of(e.code()), e.code(), e.to_string())
            }
            Self::Auth(AuthError::Expired) => (
                StatusCode::UNAUTHORIZED,
                ErrorCode::TokenExpired,
                "token expired".to_owned(),
            ),
            Self::Auth(AuthError::Unauthorized) => (
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "missing or invalid bearer token".to_owned(),
            ),
            Self::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::Validation,
                "body: too large".to_owned(),
            ),
        };
        tracing::Span::current().record("outcome", code.as_str());
        (
            status,
            Json(ErrorResponse {
                error: ErrorBody { code, message },
            }),
        )
            .into_response()
    }
}

fn status_of(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
