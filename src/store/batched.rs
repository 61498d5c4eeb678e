//! A [`MessageInserts`] decorator that commits concurrent sends together (group commit).
//!
//! A send is acknowledged only after its message is committed, and every
//! commit costs one durable flush (fsync) whatever it holds. Committing each
//! send alone caps a node at roughly one send per flush. Here sends go into a
//! queue; a dispatcher hands everything queued (up to `max_batch`) to
//! `MessageInserts::insert_messages` as soon as one of `concurrent_batches` commit
//! slots is free. An idle node therefore commits a lone send at once (no
//! timer, no added latency); under load, sends that arrive while commits are
//! in flight share the next one. Nothing is acknowledged before its own
//! batch has committed: each caller gets the outcome of its own message.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{InsertOutcome, Inserted, MessageInsert, MessageInserts, StoreError};
use crate::domain::{Message, MessageId, NewMessage, UserId};
use crate::supervisor::{Lifetime, Supervisor};

/// How sends are grouped into commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommitLimits {
    /// Longest one batch statement may take before its callers are
    /// answered `Unavailable` (`None`: no bound).
    pub statement_deadline: Option<std::time::Duration>,
    /// Most messages in one commit (1: every send commits alone).
    pub max_batch: usize,
    /// Commits in flight at once. One suits a store with a single writer
    /// (SQLite); a few let Postgres overlap one batch's flush with the next.
    pub concurrent_batches: usize,
}

/// Sends waiting for a commit slot, beyond which callers wait to enqueue
/// (back-pressure instead of unbounded memory).
const QUEUE_CAPACITY: usize = 8192;

struct Pending {
    insert: MessageInsert,
    reply: oneshot::Sender<InsertOutcome>,
}

pub struct GroupCommit {
    inner: Arc<dyn MessageInserts>,
    queue: mpsc::Sender<Pending>,
}

impl GroupCommit {
    /// Wraps `inner` and starts the dispatcher under `supervisor` (task
    /// `group_commit`), which restarts it should it fail: the queue outlives
    /// the dispatcher's runs. The dispatcher stops once this value is
    /// dropped and the queue drains, or when the supervisor stops.
    pub fn new(
        inner: Arc<dyn MessageInserts>,
        limits: GroupCommitLimits,
        supervisor: &Supervisor,
    ) -> Self {
        let (queue, pending) = mpsc::channel(QUEUE_CAPACITY);
        let pending = Arc::new(tokio::sync::Mutex::new(pending));
        let slots = Arc::new(Semaphore::new(limits.concurrent_batches.max(1)));
        let store = inner.clone();
        let deadline = limits.statement_deadline;
        let max_batch = limits.max_batch.max(1);
        supervisor.spawn("group_commit", Lifetime::UntilDone, move |stop| {
            let (pending, slots, store) = (pending.clone(), slots.clone(), store.clone());
            async move {
                let mut pending = pending.lock().await;
                dispatch(&mut pending, max_batch, slots, stop, move |batch| {
                    let store = store.clone();
                    async move { commit(store.as_ref(), deadline, batch).await }
                })
                .await;
            }
        });
        Self { inner, queue }
    }
}

/// Hands everything queued, up to `max_batch`, to `commit` whenever one of
/// `slots` is free, and frees the slot when that commit is done.
async fn dispatch<F, Fut>(
    pending: &mut mpsc::Receiver<Pending>,
    max_batch: usize,
    slots: Arc<Semaphore>,
    stop: CancellationToken,
    commit: F,
) where
    F: Fn(Vec<Pending>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        // Taking the slot before the messages is what makes batches grow
        // under load: while every slot is busy, sends accumulate in the queue.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return; // The semaphore is never closed.
        };
        let mut batch = Vec::with_capacity(max_batch);
        let received = tokio::select! {
            () = stop.cancelled() => return,
            n = pending.recv_many(&mut batch, max_batch) => n,
        };
        if received == 0 {
            return; // Every sender is gone: the store was dropped.
        }
        let span = tracing::debug_span!("store.insert_batch", batch.size = batch.len());
        let committed = commit(batch);
        tokio::spawn(
            async move {
                committed.await;
                drop(slot);
            }
            .instrument(span),
        );
    }
}

async fn commit(
    inner: &dyn MessageInserts,
    deadline: Option<std::time::Duration>,
    batch: Vec<Pending>,
) {
    crate::instruments::insert_batch(batch.len());
    let (inserts, replies): (Vec<MessageInsert>, Vec<_>) =
        batch.into_iter().map(|p| (p.insert, p.reply)).unzip();
    let outcomes = insert_isolating(&Bounded(inner, deadline), &inserts).await;
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        // A caller that went away (its client disconnected) still has its
        // message stored; nobody is left to tell.
        let _ = reply.send(outcome);
    }
}

/// One statement inserting a batch (`MessageInserts::insert_messages`), as a seam of
/// its own so the isolation below is tested on its own.
trait InsertBatch: Sync {
    fn insert<'a>(
        &'a self,
        batch: &'a [MessageInsert],
    ) -> BoxFuture<'a, Result<Vec<InsertOutcome>, StoreError>>;
}

/// The store's batch insert, bounded by a deadline.
struct Bounded<'s>(&'s dyn MessageInserts, Option<std::time::Duration>);

impl InsertBatch for Bounded<'_> {
    fn insert<'a>(
        &'a self,
        batch: &'a [MessageInsert],
    ) -> BoxFuture<'a, Result<Vec<InsertOutcome>, StoreError>> {
        // A batch still running at its deadline may commit after it: its
        // callers are told the outcome is unknown, never that nothing was written.
        Box::pin(async move {
            let insert = self.0.insert_messages(batch);
            let Some(deadline) = self.1 else {
                return insert.await;
            };
            match tokio::time::timeout(deadline, insert).await {
                Ok(outcome) => outcome,
                Err(elapsed) => Err(StoreError::OutcomeUnknown {
                    op: "insert_messages",
                    source: Arc::new(sqlx::Error::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        elapsed,
                    ))),
                }),
            }
        })
    }
}

/// Inserts a batch in one statement and answers each message. A batch that
/// fails for a reason other than the store being out of reach (one
/// message's data, or a deadlock with another batch) is split in halves and
/// each half tried again: a message the store refuses costs about 2·log2(n)
/// statements and fails alone, while the rest stays batched. A store out of
/// reach fails the whole batch at once, without one more wait per message.
fn insert_isolating<'a, S: InsertBatch>(
    store: &'a S,
    batch: &'a [MessageInsert],
) -> BoxFuture<'a, Vec<InsertOutcome>> {
    Box::pin(async move {
        match store.insert(batch).await {
            Ok(outcomes) if outcomes.len() == batch.len() => outcomes,
            Ok(outcomes) => {
                let e = StoreError::Corrupt {
                    op: "insert_messages",
                    detail: format!("{} outcomes for {} messages", outcomes.len(), batch.len()),
                };
                vec![Err(e); batch.len()]
            }
            // Out of reach, or perhaps committed: retrying the halves could
            // store a message twice (those without a clientMessageId).
            Err(e @ (StoreError::Unavailable { .. } | StoreError::OutcomeUnknown { .. })) => {
                vec![Err(e); batch.len()]
            }
            Err(e) if batch.len() == 1 => vec![Err(e)],
            Err(e) => {
                tracing::debug!(error = %e, batch.size = batch.len(), "batched insert failed; splitting it");
                let (first, second) = batch.split_at(batch.len() / 2);
                let mut outcomes = insert_isolating(store, first).await;
                outcomes.extend(insert_isolating(store, second).await);
                outcomes
            }
        }
    })
}

/// The dispatcher is gone (the runtime is shutting down): nothing was stored.
fn stopped() -> StoreError {
    StoreError::Unavailable {
        op: "insert_message",
        source: Arc::new(sqlx::Error::PoolClosed),
    }
}

#[async_trait]
impl MessageInserts for GroupCommit {
    /// Queues the message for the next commit and waits for its outcome.
    /// Dropping the future does not withdraw the message.
    async fn insert_message(
        &self,
        id: MessageId,
        sender: &UserId,
        message: &NewMessage,
        now: DateTime<Utc>,
    ) -> Result<(Message, Inserted), StoreError> {
        let (reply, outcome) = oneshot::channel();
        let insert = MessageInsert::new(id, sender, message, now);
        self.queue
            .send(Pending { insert, reply })
            .await
            .map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }

    async fn insert_messages(
        &self,
        batch: &[MessageInsert],
    ) -> Result<Vec<InsertOutcome>, StoreError> {
        self.inner.insert_messages(batch).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::domain::{ConversationId, Limits};

    fn pending() -> Pending {
        let conversation = ConversationId::new_random().to_string();
        let message = NewMessage::parse(&conversation, "hi", vec![], None, &Limits::default())
            .expect("valid message");
        let (reply, _) = oneshot::channel();
        Pending {
            insert: MessageInsert {
                id: MessageId::new_v7(),
                sender: UserId::parse("user", "alice").expect("valid id"),
                message,
                now: crate::domain::now_millis(),
            },
            reply,
        }
    }

    /// Runs the dispatcher over `queued` messages that were all waiting
    /// while its only commit slot was busy, and returns the batch sizes.
    async fn batches_after_busy_slot(queued: usize, max_batch: usize) -> Vec<usize> {
        let (queue, mut receiver) = mpsc::channel(QUEUE_CAPACITY);
        let slots = Arc::new(Semaphore::new(1));
        let busy = slots.clone().acquire_owned().await.expect("open semaphore");
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let recorded = sizes.clone();
        tokio::spawn(async move {
            let stop = CancellationToken::new();
            dispatch(&mut receiver, max_batch, slots, stop, move |batch| {
                recorded.lock().expect("not poisoned").push(batch.len());
                async {}
            })
            .await;
        });
        for _ in 0..queued {
            queue.send(pending()).await.expect("dispatcher running");
        }
        drop(busy);
        tokio::time::timeout(Duration::from_secs(5), async {
            while sizes.lock().expect("not poisoned").iter().sum::<usize>() < queued {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("every message reached a commit");
        sizes.lock().expect("not poisoned").clone()
    }

    /// Refuses, as a whole, any batch that holds a message of `bad`.
    struct RefusesSome {
        bad: Vec<MessageId>,
        statements: Mutex<usize>,
        unreachable: bool,
    }

    impl InsertBatch for RefusesSome {
        fn insert<'a>(
            &'a self,
            batch: &'a [MessageInsert],
        ) -> BoxFuture<'a, Result<Vec<InsertOutcome>, StoreError>> {
            *self.statements.lock().expect("not poisoned") += 1;
            let result = if self.unreachable {
                Err(stopped())
            } else if batch.iter().any(|m| self.bad.contains(&m.id)) {
                Err(StoreError::Corrupt {
                    op: "insert_messages",
                    detail: "refused".into(),
                })
            } else {
                Ok(batch
                    .iter()
                    .map(|m| {
                        let stored = Message {
                            id: m.id,
                            conversation_id: m.message.conversation_id,
                            sender_id: m.sender.clone(),
                            content: m.message.content.as_str().to_owned(),
                            attachments: m.message.attachments.clone(),
                            client_message_id: m.message.client_message_id.clone(),
                            created_at: m.now,
                            seq: 1,
                            deleted_at: None,
                        };
                        Ok((stored, Inserted::New))
                    })
                    .collect())
            };
            Box::pin(async move { result })
        }
    }

    #[tokio::test]
    async fn a_message_the_store_refuses_fails_alone_in_a_few_statements() {
        let batch: Vec<MessageInsert> = (0..64).map(|_| pending().insert).collect();
        let store = RefusesSome {
            bad: vec![batch[37].id],
            statements: Mutex::new(0),
            unreachable: false,
        };
        let outcomes = insert_isolating(&store, &batch).await;
        assert_eq!(outcomes.len(), 64);
        for (i, outcome) in outcomes.iter().enumerate() {
            assert_eq!(outcome.is_err(), i == 37, "message {i}: {outcome:?}");
        }
        let statements = *store.statements.lock().expect("not poisoned");
        assert!(
            statements <= 13,
            "one refused message cost {statements} statements (one by one would be 65)"
        );
    }

    #[tokio::test]
    async fn an_unreachable_store_fails_the_batch_at_once() {
        let batch: Vec<MessageInsert> = (0..64).map(|_| pending().insert).collect();
        let store = RefusesSome {
            bad: vec![],
            statements: Mutex::new(0),
            unreachable: true,
        };
        let outcomes = insert_isolating(&store, &batch).await;
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, Err(StoreError::Unavailable { .. })))
        );
        assert_eq!(*store.statements.lock().expect("not poisoned"), 1);
    }

    #[tokio::test]
    async fn sends_waiting_for_a_slot_share_one_commit() {
        assert_eq!(batches_after_busy_slot(20, 64).await, vec![20]);
    }

    #[tokio::test]
    async fn batches_never_exceed_the_limit() {
        assert_eq!(batches_after_busy_slot(20, 8).await, vec![8, 8, 4]);
    }

    #[tokio::test]
    async fn a_lone_send_on_an_idle_store_commits_at_once() {
        assert_eq!(batches_after_busy_slot(1, 64).await, vec![1]);
    }
}
