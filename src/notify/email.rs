//! E-mail notifications over SMTP (`lettre`): a plain-text and an HTML part
//! saying who wrote, an excerpt and the conversation, and how to turn these
//! e-mails off. The `Message-ID` is the notification's id, so a retried
//! e-mail that did arrive the first time can be recognised as the same one.

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

use super::{Courier, Delivery, Outgoing};
use crate::domain::Channel;

/// The SMTP server and the sender of notification e-mails.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// `smtp://user:pass@host:port` (`?tls=required` for STARTTLS) or
    /// `smtps://…` (TLS from the start); credentials stay secret.
    pub url: SecretString,
    pub from: Mailbox,
    /// Longest one SMTP conversation may take.
    pub timeout: Duration,
}

pub struct EmailCourier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl EmailCourier {
    pub fn new(settings: SmtpSettings) -> Result<Self, lettre::transport::smtp::Error> {
        let transport =
            AsyncSmtpTransport::<Tokio1Executor>::from_url(settings.url.expose_secret())?
                .timeout(Some(settings.timeout))
                .build();
        Ok(Self {
            transport,
            from: settings.from,
        })
    }
}

/// How the e-mail says how to stop these e-mails.
pub const TURN_OFF: &str = "You get this e-mail because you were not connected when the message \
     arrived. To stop these e-mails, turn off e-mail notifications in the app's settings \
     (PUT /api/v1/me/notifications with {\"email\": false}).";

/// Subject, plain text and HTML of a notification e-mail.
pub fn render(notification: &Outgoing) -> (String, String, String) {
    let body = &notification.body;
    let sender = &body.latest_message.sender_name;
    let place = match &notification.conversation_title {
        Some(title) => format!("in \u{201c}{title}\u{201d}"),
        None => "in your conversation".to_owned(),
    };
    let subject = match body.unread_count {
        0 | 1 => format!("New message from {sender}"),
        n => format!("{n} unread messages, the latest from {sender}"),
    };
    let unread = match body.unread_count {
        0 | 1 => "1 unread message".to_owned(),
        n => format!("{n} unread messages"),
    };
    let excerpt = &body.latest_message.excerpt;
    let text = format!(
        "{sender} wrote {place}:\n\n    {excerpt}\n\nYou have {unread} in this conversation \
         ({conversation}).\n\n--\n{TURN_OFF}\n",
        conversation = notification.conversation_id,
    );
    let esc = |s: &str| html_escape::encode_text(s).into_owned();
    let html = format!(
        "<!doctype html><html><body>\
         <p><strong>{sender}</strong> wrote {place}:</p>\
         <blockquote>{excerpt}</blockquote>\
         <p>You have {unread} in this conversation ({conversation}).</p>\
         <hr><p style=\"color:#666;font-size:small\">{turn_off}</p>\
         </body></html>",
        sender = esc(sender),
        place = esc(&place),
        excerpt = esc(excerpt),
        unread = esc(&unread),
        conversation = notification.conversation_id,
        turn_off = esc(TURN_OFF),
    );
    (subject, text, html)
}

#[async_trait]
impl Courier for EmailCourier {
    fn channel(&self) -> Channel {
        Channel::Email
    }

    async fn deliver(&self, notification: &Outgoing) -> Delivery {
        let Some(address) = &notification.email else {
            return Delivery::Refused("no e-mail address".to_owned());
        };
        let to: Mailbox = match address.parse() {
            Ok(to) => to,
            Err(e) => return Delivery::Refused(format!("unusable e-mail address: {e}")),
        };
        let (subject, text, html) = render(notification);
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(format!("<{}@parloir>", notification.body.id)))
            .multipart(MultiPart::alternative_plain_html(text, html));
        let message = match message {
            Ok(message) => message,
            Err(e) => return Delivery::Refused(format!("e-mail could not be built: {e}")),
        };
        match self.transport.send(message).await {
            Ok(_) => Delivery::Delivered,
            Err(e) if e.is_permanent() => Delivery::Refused(e.to_string()),
            Err(e) => Delivery::Retry(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ConversationId, MessageId, NotificationId, UserId};
    use crate::protocol::{NotifiedMessage, UnreadNotification};

    fn outgoing(excerpt: &str, unread: u64) -> Outgoing {
        let conversation_id = ConversationId::new_random();
        Outgoing {
            body: UnreadNotification {
                id: NotificationId::new_random(),
                kind: crate::protocol::MESSAGE_UNREAD.to_owned(),
                recipient_id: UserId::parse("user", "bob").expect("valid id"),
                conversation_id,
                unread_count: unread,
                latest_message: NotifiedMessage {
                    id: MessageId::new_v7(),
                    sender_id: UserId::parse("user", "alice").expect("valid id"),
                    sender_name: "Alice <Salon>".to_owned(),
                    excerpt: excerpt.to_owned(),
                    created_at: "2026-12-01T10:00:00.000Z".to_owned(),
                },
            },
            email: Some("bob@example.com".to_owned()),
            conversation_title: Some("Haircut".to_owned()),
            conversation_id,
            at: chrono::Utc::now(),
        }
    }

    #[test]
    fn html_is_escaped_and_both_parts_say_how_to_turn_it_off() {
        let (subject, text, html) = render(&outgoing("<script>alert(1)</script>", 3));
        assert_eq!(subject, "3 unread messages, the latest from Alice <Salon>");
        assert!(text.contains("<script>alert(1)</script>"));
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("Alice &lt;Salon&gt;"));
        assert!(text.contains("turn off e-mail notifications"));
        assert!(html.contains("turn off e-mail notifications"));
        assert!(text.contains("Haircut"));
    }
}
