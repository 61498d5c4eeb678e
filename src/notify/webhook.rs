//! Webhooks the Standard Webhooks way (<https://www.standardwebhooks.com>):
//! a JSON POST with `webhook-id` (the notification's id, the same on every
//! retry so the receiver can de-duplicate), `webhook-timestamp` (Unix
//! seconds) and `webhook-signature` (`v1,` + base64 of HMAC-SHA256 over
//! `id.timestamp.body`, keyed with the shared secret).

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;

use super::{Courier, Delivery, Outgoing};
use crate::domain::Channel;

/// Where and how webhooks are sent.
#[derive(Clone)]
pub struct WebhookSettings {
    pub url: reqwest::Url,
    /// The signing key (the bytes of a `whsec_…` secret, base64-decoded).
    pub key: SecretSlice<u8>,
    /// Longest one attempt may take, connection included.
    pub timeout: Duration,
}

/// The URL may carry the receiver's credentials: `Debug` shows its host only.
impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("host", &self.url.host_str())
            .field("key", &self.key)
            .field("timeout", &self.timeout)
            .finish()
    }
}

pub struct WebhookCourier {
    client: reqwest::Client,
    settings: WebhookSettings,
}

impl WebhookCourier {
    pub fn new(settings: WebhookSettings) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            // A receiver that redirects is misconfigured; following it would
            // send signed payloads somewhere nobody configured.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("parloir/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client, settings })
    }
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// The signing key of a Standard Webhooks secret: the base64 after
/// `whsec_`, or the secret's own bytes when it has no such prefix.
pub fn signing_key(secret: &str) -> Result<Vec<u8>, base64::DecodeError> {
    match secret.strip_prefix("whsec_") {
        Some(encoded) => BASE64.decode(encoded),
        None => Ok(secret.as_bytes().to_vec()),
    }
}

#[async_trait]
impl Courier for WebhookCourier {
    fn channel(&self) -> Channel {
        Channel::Webhook
    }

    async fn deliver(&self, notification: &Outgoing) -> Delivery {
        let body = match serde_json::to_vec(&notification.body) {
            Ok(body) => body,
            Err(e) => return Delivery::Refused(format!("payload did not serialise: {e}")),
        };
        let id = notification.body.id.to_string();
        let timestamp = notification.at.timestamp();
        let signed = signature(self.settings.key.expose_secret(), &id, timestamp, &body);
        let sent = self
            .client
            .post(self.settings.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signed)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) => classify(response.status()),
            // Timeouts, refused connections, resets: the receiver may be back
            // later. The URL may carry the receiver's credentials or tokens:
            // errors that are logged and stored do not repeat it.
            Err(e) => Delivery::Retry(e.without_url().to_string()),
        }
    }
}

/// 2xx delivered; 408 and 429 (the receiver asks to come back) and 5xx
/// retried; any other status refused for good (410 Gone included).
fn classify(status: StatusCode) -> Delivery {
    if status.is_success() {
        Delivery::Delivered
    } else if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        Delivery::Retry(format!("receiver answered {status}"))
    } else {
        Delivery::Refused(format!("receiver answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference
    /// libraries: this key, id, timestamp and body sign to this signature.
    #[test]
    fn signs_like_the_reference_implementation() {
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid secret");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn statuses_decide_retries() {
        assert_eq!(classify(StatusCode::NO_CONTENT), Delivery::Delivered);
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY),
            Delivery::Retry(_)
        ));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS),
            Delivery::Retry(_)
        ));
        assert!(matches!(classify(StatusCode::GONE), Delivery::Refused(_)));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST),
            Delivery::Refused(_)
        ));
    }

    #[test]
    fn secrets_without_the_prefix_are_their_own_key() {
        assert_eq!(
            signing_key("plain").expect("no decoding"),
            b"plain".to_vec()
        );
        assert!(signing_key("whsec_not base64!").is_err());
    }
}
