//! Whom `get-presence` may answer about: the users who share a conversation
//! with the caller. Asking the store means a join per call; a client
//! polling presence, or probing strangers, would make that one per event.
//!
//! Contacts change: they grow as users take part in shared conversations,
//! and shrink when one blocks the other. A remembered set is trusted for
//! `FRESH_FOR` (a block takes effect within it on every node); within that,
//! ids not in the set reload it at most once per `RELOAD_AFTER`, so a new
//! contact is seen within a second and strangers cost memory lookups.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::UserId;
use crate::store::{Store, StoreError};

/// How often a user's contacts may be reloaded for ids not known as contacts.
const RELOAD_AFTER: Duration = Duration::from_secs(1);
/// How long a remembered set is trusted at all.
const FRESH_FOR: Duration = Duration::from_secs(4);
/// Users whose contacts are remembered at once.
const CAPACITY: usize = 50_000;

struct Known {
    contacts: HashSet<UserId>,
    loaded_at: Instant,
}

pub(super) struct ContactsCache {
    known: quick_cache::sync::Cache<UserId, Arc<Known>>,
}

impl ContactsCache {
    pub fn new() -> Self {
        Self {
            known: quick_cache::sync::Cache::new(CAPACITY),
        }
    }

    /// Which of `ids` share a conversation with `user`.
    pub async fn visible(
        &self,
        store: &Store,
        user: &UserId,
        ids: &[UserId],
    ) -> Result<HashSet<UserId>, StoreError> {
        let known = match self.known.get(user) {
            Some(known)
                if known.loaded_at.elapsed() < FRESH_FOR
                    && (ids.iter().all(|id| known.contacts.contains(id))
                        || known.loaded_at.elapsed() < RELOAD_AFTER) =>
            {
                known
            }
            _ => {
                let loaded = Arc::new(Known {
                    contacts: store
                        .conversations
                        .contacts(user)
                        .await?
                        .into_iter()
                        .collect(),
                    loaded_at: Instant::now(),
                });
                self.known.insert(user.clone(), loaded.clone());
                loaded
            }
        };
        Ok(ids
            .iter()
            .filter(|id| known.contacts.contains(*id))
            .cloned()
            .collect())
    }

    /// `users`' contacts changed (a new conversation, a block): read them again.
    pub fn forget(&self, users: &[UserId]) {
        for user in users {
            self.known.remove(user);
        }
    }
}
