//! The OpenAPI document, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::protocol::{MESSAGE_UNREAD, NotifiedMessage, UnreadNotification};

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
        super::me::set_notifications,
        super::me::block,
        super::me::unblock,
        super::me::blocks,
    ),
    components(schemas(UnreadNotification, NotifiedMessage)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// `GET /api/v1/openapi.json`. utoipa does not write OpenAPI 3.1's
/// `webhooks` section, so the notification webhook is added to the
/// generated document here.
pub async fn document() -> Json<serde_json::Value> {
    static DOCUMENT: std::sync::LazyLock<serde_json::Value> = std::sync::LazyLock::new(|| {
        let mut document = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        if let Some(object) = document.as_object_mut() {
            object.insert("webhooks".to_owned(), webhooks());
        }
        document
    });
    Json(DOCUMENT.clone())
}

/// The `message.unread` webhook (PROTOCOL.md §7, README "Offline notifications").
fn webhooks() -> serde_json::Value {
    let header = |name: &str, description: &str| {
        serde_json::json!({
            "name": name, "in": "header", "required": true,
            "description": description, "schema": {"type": "string"}
        })
    };
    serde_json::json!({
        MESSAGE_UNREAD: {
            "post": {
                "summary": "Messages wait unread for a participant with no connected device",
                "description": "Sent after PARLOIR_NOTIFY_DELAY_SECS to PARLOIR_WEBHOOK_URL, several \
                    messages of one conversation folded into one notification, signed the Standard \
                    Webhooks way. Retried with exponential backoff on 5xx, 408, 429 and timeouts, \
                    with the same webhook-id; other 4xx (410 included) stop the retries.",
                "parameters": [
                    header("webhook-id", "The notification id; the same on every retry: de-duplicate by it."),
                    header("webhook-timestamp", "Unix seconds when this attempt was made."),
                    header("webhook-signature", "v1,<base64 HMAC-SHA256 of \"{webhook-id}.{webhook-timestamp}.{body}\" keyed with the secret (the base64 after whsec_)>"),
                ],
                "requestBody": {
                    "required": true,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/UnreadNotification"}}}
                },
                "responses": {
                    "2XX": {"description": "Delivered."},
                    "410": {"description": "Gone: never retried."},
                    "5XX": {"description": "Retried later with the same webhook-id."}
                }
            }
        }
    })
}

/// `GET /api/v1/asyncapi.json`: the socket events (AsyncAPI 3), generated
/// from the same protocol types as the committed client definitions.
pub async fn asyncapi() -> Json<serde_json::Value> {
    static DOCUMENT: std::sync::LazyLock<serde_json::Value> =
        std::sync::LazyLock::new(crate::client_contract::asyncapi);
    Json(DOCUMENT.clone())
}
