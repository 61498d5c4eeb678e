//! What users' tokens say about them (`email`, `name`), remembered for
//! offline notifications, and their choice about notification e-mails.

use super::{Messaging, ServiceResult};
use crate::auth::User;
use crate::domain::{ContactClaims, now_millis};

/// Users whose last remembered claims this node knows, so that a user who
/// connects again with the same token claims costs no write.
pub(super) const REMEMBERED_PROFILES: usize = 100_000;

/// The claims last written for a user.
pub(super) type Remembered = quick_cache::sync::Cache<crate::domain::UserId, Claims>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Claims {
    email: Option<String>,
    name: Option<String>,
}

impl Messaging {
    /// Remembers the caller's `email` and `name` claims (at a handshake or
    /// an API call), writing only when they changed since this node last
    /// wrote them. A failure is logged, never the caller's problem: the
    /// previous address stays in use.
    pub async fn remember_profile(&self, user: &User) {
        let claims = Claims {
            email: user.email.clone(),
            name: user.name.clone(),
        };
        if claims.email.is_none() && claims.name.is_none() {
            return;
        }
        let remembered = &self.inner.profiles;
        if remembered.get(&user.id).as_ref() == Some(&claims) {
            return;
        }
        match self
            .store()
            .notifications
            .remember_contact(
                &user.id,
                claims.email.as_deref(),
                claims.name.as_deref(),
                now_millis(),
            )
            .await
        {
            Ok(()) => remembered.insert(user.id.clone(), claims),
            Err(e) => {
                tracing::warn!(user.id = %user.id, error = %e, "could not remember the user's e-mail and name")
            }
        }
    }

    /// The claims of `user`'s token to write, unless this node wrote the
    /// same ones last (or there are none).
    pub(super) fn claims_to_remember(&self, user: &User) -> Option<ContactClaims> {
        let claims = Claims {
            email: user.email.clone(),
            name: user.name.clone(),
        };
        if claims.email.is_none() && claims.name.is_none() {
            return None;
        }
        if self.inner.profiles.get(&user.id).as_ref() == Some(&claims) {
            return None;
        }
        Some(ContactClaims {
            user: user.id.clone(),
            email: claims.email,
            name: claims.name,
        })
    }

    /// `claims` are written: this node need not write them again.
    pub(super) fn claims_remembered(&self, claims: &ContactClaims) {
        self.inner.profiles.insert(
            claims.user.clone(),
            Claims {
                email: claims.email.clone(),
                name: claims.name.clone(),
            },
        );
    }

    /// `PUT /api/v1/me/notifications`: the caller turns notification
    /// e-mails on or off.
    #[tracing::instrument(skip_all, fields(user.id = %user.id, email = enabled))]
    pub async fn set_email_notifications(&self, user: &User, enabled: bool) -> ServiceResult<()> {
        self.store()
            .notifications
            .set_email_notifications(&user.id, enabled, now_millis())
            .await?;
        Ok(())
    }
}
