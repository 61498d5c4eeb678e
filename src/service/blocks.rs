//! Blocks (PROTOCOL.md §10): a user blocks another. The blocked user
//! cannot start a conversation with the blocker, neither of them can send
//! into their one-to-one conversation, and presence, typing and read
//! receipts stop flowing between them, both ways.
//!
//! Which blocks a user is part of is read on every typing event, read
//! receipt and one-to-one send, so each node keeps it for the users it
//! serves, and reads it again for all of them in one query every
//! `REFRESH_EVERY` (`refresh_blocks_once`): a block made on another node
//! takes effect here within that (the contract promises 5 s), and a busy
//! node costs the store one query per interval, not one per user. Users not
//! served since the previous refresh are forgotten (read again when next
//! served). The node where a block changes forgets both users' entries at
//! once. Starting a conversation reads the store itself: it is rare, and
//! must not slip through.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tracing::instrument;

use super::{Messaging, ServiceError, ServiceResult};
use crate::auth::User;
use crate::domain::{UserId, ValidationError, format_time, now_millis};
use crate::protocol::{BlockAck, BlockList, BlockedUser};
use crate::store::{BlockRelations, Store, StoreError};

/// How often a node reads again the blocks of the users it serves.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);
/// Users whose blocks a node remembers at once.
const CAPACITY: usize = 50_000;
/// Users whose blocks one refresh query reads.
const REFRESH_BATCH: usize = 1_000;
/// Most users one user may block (bounds what every typing event reads).
pub const MAX_BLOCKS_PER_USER: usize = 1_000;

/// A user's blocks, as last read.
pub(super) struct Known {
    /// Everyone in a block with the user, whoever blocked whom.
    pub(super) either_way: HashSet<UserId>,
    /// Served since the last refresh.
    used: AtomicBool,
}

impl Known {
    fn new(relations: BlockRelations) -> Arc<Self> {
        Arc::new(Self {
            either_way: relations
                .blocks
                .into_iter()
                .chain(relations.blocked_by)
                .collect(),
            used: AtomicBool::new(true),
        })
    }
}

pub(super) struct BlocksCache {
    known: quick_cache::sync::Cache<UserId, Arc<Known>>,
    /// Bumped by every `forget`, so a refresh that read the store before a
    /// block changed does not put back what was forgotten.
    forgotten: AtomicU64,
}

impl BlocksCache {
    pub(super) fn new() -> Self {
        Self {
            known: quick_cache::sync::Cache::new(CAPACITY),
            forgotten: AtomicU64::new(0),
        }
    }

    /// The users in a block with `user`, either way, as read at most one
    /// refresh ago.
    pub(super) async fn of(&self, store: &Store, user: &UserId) -> Result<Arc<Known>, StoreError> {
        if let Some(known) = self.known.get(user) {
            known.used.store(true, Ordering::Relaxed);
            return Ok(known);
        }
        let known = Known::new(store.blocks.block_relations(user).await?);
        self.known.insert(user.clone(), known.clone());
        Ok(known)
    }

    /// Reads again the blocks of every user served since the last refresh,
    /// a batch per query, and forgets the others. Returns how many users.
    async fn refresh(&self, store: &Store) -> Result<usize, StoreError> {
        let forgotten = self.forgotten.load(Ordering::Acquire);
        let mut served = Vec::new();
        let mut idle = Vec::new();
        for (user, known) in self.known.iter() {
            if known.used.swap(false, Ordering::Relaxed) {
                served.push(user);
            } else {
                idle.push(user);
            }
        }
        for user in &idle {
            self.known.remove(user);
        }
        for batch in served.chunks(REFRESH_BATCH) {
            let mut relations = store.blocks.block_relations_of(batch).await?;
            if self.forgotten.load(Ordering::Acquire) != forgotten {
                // A block changed while reading: what was read may predate
                // it, so the batch is read again user by user when served.
                for user in batch {
                    self.known.remove(user);
                }
                continue;
            }
            for user in batch {
                let known = Known::new(relations.remove(user).unwrap_or_default());
                // Served before this refresh: keep it for the next one.
                known.used.store(false, Ordering::Relaxed);
                self.known.insert(user.clone(), known);
            }
        }
        Ok(served.len())
    }

    fn forget(&self, users: [&UserId; 2]) {
        self.forgotten.fetch_add(1, Ordering::AcqRel);
        for user in users {
            self.known.remove(user);
        }
    }
}

impl Messaging {
    /// `POST /api/v1/me/blocks/{userId}` and `block-user`.
    #[instrument(skip_all, fields(user.id = %user.id))]
    pub async fn block_user(&self, user: &User, blocked: UserId) -> ServiceResult<BlockAck> {
        if blocked == user.id {
            return Err(ValidationError::new("userId", "cannot be the caller").into());
        }
        let blocks = &self.store().blocks;
        if blocks.blocked_by(&user.id).await?.len() >= MAX_BLOCKS_PER_USER {
            return Err(ValidationError::new(
                "userId",
                format!("a user may block at most {MAX_BLOCKS_PER_USER} users"),
            )
            .into());
        }
        blocks.block_user(&user.id, &blocked, now_millis()).await?;
        self.forget_blocks_of([&user.id, &blocked]);
        Ok(BlockAck {
            user_id: blocked,
            blocked: true,
        })
    }

    /// `DELETE /api/v1/me/blocks/{userId}` and `unblock-user`.
    #[instrument(skip_all, fields(user.id = %user.id))]
    pub async fn unblock_user(&self, user: &User, blocked: UserId) -> ServiceResult<BlockAck> {
        self.store().blocks.unblock_user(&user.id, &blocked).await?;
        self.forget_blocks_of([&user.id, &blocked]);
        Ok(BlockAck {
            user_id: blocked,
            blocked: false,
        })
    }

    /// `GET /api/v1/me/blocks`: whom the caller blocks, most recent first.
    #[instrument(skip_all, fields(user.id = %user.id))]
    pub async fn blocks(&self, user: &User) -> ServiceResult<BlockList> {
        let blocks = self.store().blocks.blocked_by(&user.id).await?;
        Ok(BlockList {
            blocks: blocks
                .into_iter()
                .map(|(user_id, at)| BlockedUser {
                    user_id,
                    blocked_at: format_time(&at),
                })
                .collect(),
        })
    }

    /// The users in a block with `user`, either way (at most a few seconds
    /// old). An unreadable store reads as no block: typing and receipts
    /// keep flowing rather than stop for everyone.
    pub(super) async fn in_block_with(&self, user: &UserId) -> HashSet<UserId> {
        match self.inner.blocks.of(self.store(), user).await {
            Ok(known) => known.either_way.clone(),
            Err(e) => {
                tracing::warn!(error = %e, "blocks unavailable; none applied");
                HashSet::new()
            }
        }
    }

    /// Refuses a conversation that `creator` would start with someone who
    /// blocks them. Read from the store: exact, not cached.
    pub(super) async fn refuse_if_blocked_by(
        &self,
        creator: &UserId,
        participants: &[UserId],
    ) -> ServiceResult<()> {
        let relations = self.store().blocks.block_relations(creator).await?;
        if participants
            .iter()
            .any(|p| relations.blocked_by.binary_search(p).is_ok())
        {
            return Err(ServiceError::Forbidden(
                "a participant does not accept conversations with you",
            ));
        }
        Ok(())
    }

    /// Refuses a send into a one-to-one conversation whose two participants
    /// are in a block, either way.
    pub(super) async fn refuse_if_pair_blocked(
        &self,
        sender: &UserId,
        participants: &[UserId],
    ) -> ServiceResult<()> {
        let [a, b] = participants else {
            return Ok(());
        };
        let other = if a == sender { b } else { a };
        let known = self.inner.blocks.of(self.store(), sender).await?;
        if known.either_way.contains(other) {
            return Err(ServiceError::Forbidden(
                "this conversation is blocked; unblock to write again",
            ));
        }
        Ok(())
    }

    /// One refresh of this node's view of blocks (see the module).
    pub async fn refresh_blocks_once(&self) -> ServiceResult<usize> {
        Ok(self.inner.blocks.refresh(self.store()).await?)
    }

    fn forget_blocks_of(&self, users: [&UserId; 2]) {
        self.inner.blocks.forget(users);
        self.inner
            .contacts
            .forget(&[users[0].clone(), users[1].clone()]);
    }
}
