//! The OpenAPI document, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "parloir HTTP API", description = "Conversations and messages for back-end services. The realtime side is Socket.IO v4 on namespace /messaging."),
    paths(
        super::conversations::create,
        super::conversations::list,
        super::conversations::history,
        super::conversations::mark_read,
        super::conversations::unread,
        super::messages::send,
        super::messages::delete,
    ),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// `GET /api/v1/asyncapi.json`: the socket events (AsyncAPI 3), generated
/// from the same protocol types as the committed client definitions.
pub async fn asyncapi() -> Json<serde_json::Value> {
    static DOCUMENT: std::sync::LazyLock<serde_json::Value> =
        std::sync::LazyLock::new(crate::client_contract::asyncapi);
    Json(DOCUMENT.clone())
}
