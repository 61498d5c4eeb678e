//! Offline notification settings: the channels (webhook, SMTP) and timings,
//! and their validation.

use std::time::Duration;

use secrecy::ExposeSecret;

use super::validate::{in_range, millis};
use super::{ConfigError, RawConfig, invalid};
use crate::notify::webhook::signing_key;
use crate::notify::{SmtpSettings, WebhookSettings};
use crate::service::NotifySettings;

/// Standard Webhooks secrets are 24 to 64 bytes; fewer than 16 is guessable.
const MIN_WEBHOOK_KEY_BYTES: usize = 16;

/// Offline notifications: their timings and the configured channels.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub settings: crate::service::NotifySettings,
    /// How often each node gathers and delivers.
    pub poll: Duration,
    pub webhook: Option<crate::notify::WebhookSettings>,
    pub smtp: Option<crate::notify::SmtpSettings>,
}

impl NotifyConfig {
    /// No channel: messages leave no outbox entry and no worker runs.
    pub fn disabled() -> Self {
        Self {
            settings: crate::service::NotifySettings::default(),
            poll: Duration::from_secs(1),
            webhook: None,
            smtp: None,
        }
    }

    pub fn enabled(&self) -> bool {
        self.webhook.is_some() || self.smtp.is_some()
    }
}

impl RawConfig {
    pub(super) fn notify(&self) -> Result<NotifyConfig, ConfigError> {
        let settings = NotifySettings {
            delay: Duration::from_secs(in_range(
                "PARLOIR_NOTIFY_DELAY_SECS",
                self.notify_delay_secs,
                0..=86_400,
            )?),
            max_attempts: in_range(
                "PARLOIR_NOTIFY_MAX_ATTEMPTS",
                self.notify_max_attempts,
                1..=100,
            )?,
            lease: Duration::from_secs(in_range(
                "PARLOIR_NOTIFY_LEASE_SECS",
                self.notify_lease_secs,
                1..=3600,
            )?),
            retry_base: Duration::from_secs(in_range(
                "PARLOIR_NOTIFY_RETRY_BASE_SECS",
                self.notify_retry_base_secs,
                1..=3600,
            )?),
            ..NotifySettings::default()
        };
        let webhook = match (&self.webhook_url, &self.webhook_secret) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(invalid(
                    "PARLOIR_WEBHOOK_SECRET",
                    "must be set with PARLOIR_WEBHOOK_URL (receivers check the signature)",
                ));
            }
            (Some(url), Some(secret)) => {
                let url = reqwest::Url::parse(url.expose_secret())
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .ok_or_else(|| invalid("PARLOIR_WEBHOOK_URL", "must be an http(s):// URL"))?;
                let key = signing_key(secret.expose_secret()).map_err(|_| {
                    invalid(
                        "PARLOIR_WEBHOOK_SECRET",
                        "the part after whsec_ must be base64",
                    )
                })?;
                if key.len() < MIN_WEBHOOK_KEY_BYTES {
                    return Err(invalid(
                        "PARLOIR_WEBHOOK_SECRET",
                        "must be at least 16 bytes (after base64 decoding, with whsec_)",
                    ));
                }
                Some(WebhookSettings {
                    url,
                    key: key.into(),
                    timeout: millis(
                        "PARLOIR_WEBHOOK_TIMEOUT_MS",
                        self.webhook_timeout_ms,
                        100..=120_000,
                    )?,
                })
            }
        };
        let smtp = match (&self.smtp_url, &self.smtp_from) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(invalid(
                    "PARLOIR_SMTP_FROM",
                    "must be set with PARLOIR_SMTP_URL",
                ));
            }
            (Some(url), Some(from)) => {
                if !["smtp://", "smtps://"]
                    .iter()
                    .any(|scheme| url.expose_secret().starts_with(scheme))
                {
                    return Err(invalid(
                        "PARLOIR_SMTP_URL",
                        "must be an smtp:// or smtps:// URL",
                    ));
                }
                let from = from.parse().map_err(|_| {
                    invalid(
                        "PARLOIR_SMTP_FROM",
                        "must be an address like parloir <noreply@example.com>",
                    )
                })?;
                Some(SmtpSettings {
                    url: url.clone(),
                    from,
                    timeout: millis(
                        "PARLOIR_SMTP_TIMEOUT_MS",
                        self.smtp_timeout_ms,
                        100..=120_000,
                    )?,
                })
            }
        };
        // A lease shorter than an attempt would let a second node send
        // while the first is still waiting for its answer.
        let longest_attempt = [
            webhook.as_ref().map(|w| w.timeout),
            smtp.as_ref().map(|s| s.timeout),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or_default();
        if settings.lease <= longest_attempt {
            return Err(invalid(
                "PARLOIR_NOTIFY_LEASE_SECS",
                "must be longer than PARLOIR_WEBHOOK_TIMEOUT_MS and PARLOIR_SMTP_TIMEOUT_MS",
            ));
        }
        Ok(NotifyConfig {
            settings,
            poll: millis("PARLOIR_NOTIFY_POLL_MS", self.notify_poll_ms, 10..=60_000)?,
            webhook,
            smtp,
        })
    }
}
