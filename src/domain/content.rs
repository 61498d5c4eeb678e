//! Message content and attachments, validated against the configured limits
//! (PROTOCOL.md §3, §6).

use serde::{Deserialize, Serialize};

use super::ValidationError;

/// The limits PROTOCOL.md calls configurable. Built once from config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest content, in Unicode scalar values after trimming.
    pub max_content_chars: usize,
    pub max_attachments: usize,
    pub max_attachment_url_chars: usize,
    /// Dev mode also accepts `http://` attachment URLs.
    pub allow_http_attachments: bool,
    /// Participants per conversation, the caller included.
    pub max_participants: usize,
    pub max_title_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_content_chars: 4000,
            max_attachments: 10,
            max_attachment_url_chars: 2048,
            allow_http_attachments: false,
            max_participants: 100,
            max_title_chars: 200,
        }
    }
}

/// Trimmed message text. May be empty only when the message has attachments;
/// [`super::NewMessage::parse`] enforces that pairing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content(String);

impl Content {
    /// Line breaks and tabs are text; any other control character (NUL,
    /// which Postgres cannot store, among them) is refused in both stores.
    pub fn parse(raw: &str, limits: &Limits) -> Result<Self, ValidationError> {
        let trimmed = raw.trim();
        if trimmed.chars().count() > limits.max_content_chars {
            return Err(ValidationError::new(
                "content",
                format!("must be at most {} characters", limits.max_content_chars),
            ));
        }
        if trimmed
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(ValidationError::new(
                "content",
                "must not contain control characters other than line breaks and tabs",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A link to a file stored elsewhere; parloir stores only the reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, ts_rs::TS)]
pub struct Attachment {
    pub url: String,
    /// A MIME type such as `image/jpeg`.
    #[serde(rename = "type")]
    pub mime_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub size: Option<u64>,
}

const MAX_ATTACHMENT_NAME_CHARS: usize = 255;
const MAX_MIME_CHARS: usize = 127;

impl Attachment {
    /// Checks one attachment; `index` names it in the error (`attachments[2].url`).
    pub fn validate(self, index: usize, limits: &Limits) -> Result<Self, ValidationError> {
        let field = |name: &str| format!("attachments[{index}].{name}");
        let url_ok = self.url.starts_with("https://")
            || (limits.allow_http_attachments && self.url.starts_with("http://"));
        if !url_ok {
            let rule = if limits.allow_http_attachments {
                "must be an http(s) URL"
            } else {
                "must be an https URL"
            };
            return Err(ValidationError::new(field("url"), rule));
        }
        let host_and_path = self
            .url
            .split_once("://")
            .map(|(_, rest)| rest)
            .unwrap_or_default();
        if host_and_path.is_empty()
            || self
                .url
                .chars()
                .any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(ValidationError::new(
                field("url"),
                "must be a well-formed URL",
            ));
        }
        if self.url.chars().count() > limits.max_attachment_url_chars {
            return Err(ValidationError::new(
                field("url"),
                format!(
                    "must be at most {} characters",
                    limits.max_attachment_url_chars
                ),
            ));
        }
        if !is_mime_type(&self.mime_type) {
            return Err(ValidationError::new(
                field("type"),
                "must be a MIME type such as image/jpeg",
            ));
        }
        if let Some(name) = &self.name
            && (name.chars().count() > MAX_ATTACHMENT_NAME_CHARS
                || name.chars().any(char::is_control))
        {
            return Err(ValidationError::new(
                field("name"),
                "must be at most 255 printable characters",
            ));
        }
        Ok(self)
    }
}

/// `type/subtype`, both non-empty RFC 6838 tokens (parameters such as
/// `; charset=utf-8` are not accepted: attachments name a file type).
fn is_mime_type(raw: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
    };
    raw.len() <= MAX_MIME_CHARS
        && raw
            .split_once('/')
            .is_some_and(|(t, s)| token(t) && token(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn attachment(url: &str, mime: &str) -> Attachment {
        Attachment {
            url: url.into(),
            mime_type: mime.into(),
            name: None,
            size: None,
        }
    }

    #[test]
    fn content_keeps_line_breaks_and_refuses_other_control_characters() {
        let limits = Limits::default();
        assert!(Content::parse("line one\nline two\r\n\tindented", &limits).is_ok());
        for bad in [
            "a\u{0}b",
            "bell\u{7}",
            "esc\u{1b}[31m",
            "del\u{7f}",
            "c1\u{85}x",
        ] {
            assert!(Content::parse(bad, &limits).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn https_is_required_outside_dev_mode() {
        let limits = Limits::default();
        assert!(
            attachment("https://cdn.example/a.jpg", "image/jpeg")
                .validate(0, &limits)
                .is_ok()
        );
        assert!(
            attachment("http://cdn.example/a.jpg", "image/jpeg")
                .validate(0, &limits)
                .is_err()
        );
        let dev = Limits {
            allow_http_attachments: true,
            ..limits
        };
        assert!(
            attachment("http://cdn.example/a.jpg", "image/jpeg")
                .validate(0, &dev)
                .is_ok()
        );
        assert!(
            attachment("javascript:alert(1)", "image/jpeg")
                .validate(0, &dev)
                .is_err()
        );
        assert!(
            attachment("https://", "image/jpeg")
                .validate(0, &dev)
                .is_err()
        );
    }

    #[test]
    fn mime_type_must_have_type_and_subtype() {
        let limits = Limits::default();
        for bad in [
            "",
            "image",
            "image/",
            "/jpeg",
            "image/jp eg",
            "text/plain; charset=utf-8",
        ] {
            assert!(
                attachment("https://x.example/a", bad)
                    .validate(0, &limits)
                    .is_err(),
                "{bad}"
            );
        }
        assert!(
            attachment("https://x.example/a", "application/vnd.ms-excel")
                .validate(0, &limits)
                .is_ok()
        );
    }

    #[test]
    fn long_url_is_refused_with_its_index() {
        let url = format!("https://x.example/{}", "a".repeat(2048));
        let err = attachment(&url, "image/png")
            .validate(3, &Limits::default())
            .unwrap_err();
        assert_eq!(err.field, "attachments[3].url");
    }

    proptest! {
        #[test]
        fn content_is_trimmed_and_counted_in_scalar_values(core in "\\PC{0,50}", pad in "[ \t\n]{0,5}") {
            let limits = Limits { max_content_chars: 20, ..Limits::default() };
            let raw = format!("{pad}{core}{pad}");
            let trimmed = raw.trim();
            match Content::parse(&raw, &limits) {
                Ok(c) => {
                    prop_assert_eq!(c.as_str(), trimmed);
                    prop_assert!(trimmed.chars().count() <= 20);
                }
                Err(_) => prop_assert!(trimmed.chars().count() > 20),
            }
        }

        /// Any text at all: accepted content holds nothing a store refuses.
        #[test]
        fn accepted_content_is_storable_text(raw in any::<String>()) {
            if let Ok(c) = Content::parse(&raw, &Limits::default()) {
                prop_assert!(!c.as_str().contains('\0'));
                prop_assert!(c
                    .as_str()
                    .chars()
                    .all(|ch| !ch.is_control() || matches!(ch, '\n' | '\r' | '\t')));
            }
        }
    }

    #[test]
    fn multibyte_characters_count_once() {
        let limits = Limits {
            max_content_chars: 3,
            ..Limits::default()
        };
        assert!(Content::parse("😀é字", &limits).is_ok());
        assert!(Content::parse("😀é字x", &limits).is_err());
    }
}
