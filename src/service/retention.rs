//! The retention job (issue #14): archive idle conversations, erase the
//! content of messages deleted long ago, and optionally delete old messages.
//! Every node runs it periodically (`app/background.rs`); the store's lock
//! lets one node at a time do the work, and `parloir retention` runs it once.
//!
//! The rules (what qualifies, how rows change) are the store's statements,
//! applied in bounded batches; this module orders them, stops between
//! batches when asked, and counts. Time is a parameter: a run compares rows
//! with the `now` it is given, never with a clock of its own.

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::field::Empty;

use crate::domain::{RetentionCounts, RetentionCutoffs, RetentionPolicy};
use crate::instruments::{self, RetentionAction, RetentionOutcome};
use crate::store::{Store, StoreError};

/// The retention job over one store. Cheap to clone.
#[derive(Clone)]
pub struct RetentionJob {
    store: Store,
    policy: RetentionPolicy,
}

/// How a run ended.
#[derive(Debug)]
pub enum RunOutcome {
    /// Everything that qualified at `now` was changed.
    Completed,
    /// Another node (or process) held the retention lock: nothing was done here.
    Skipped,
    /// Asked to stop (the node drains): the batches before the request were
    /// done, the rest waits for the next run.
    Stopped,
    /// A statement failed; the batches before it stay done. The error names
    /// the statement (the job's only dependency is the store).
    Failed(StoreError),
}

impl RunOutcome {
    fn instrument(&self) -> RetentionOutcome {
        match self {
            Self::Completed => RetentionOutcome::Completed,
            Self::Skipped => RetentionOutcome::Skipped,
            Self::Stopped => RetentionOutcome::Stopped,
            Self::Failed(_) => RetentionOutcome::Failed,
        }
    }
}

/// What one run changed, and how it ended.
#[derive(Debug)]
pub struct RetentionRun {
    /// Rows changed by this run (by the batches done before a stop or a failure).
    pub changed: RetentionCounts,
    pub outcome: RunOutcome,
}

impl RetentionJob {
    pub fn new(store: Store, policy: RetentionPolicy) -> Self {
        Self { store, policy }
    }

    pub fn policy(&self) -> &RetentionPolicy {
        &self.policy
    }

    /// One run at `now`: takes the retention lock (or skips, if another node
    /// holds it), then archives, purges and deletes in batches of
    /// `policy.batch` rows until nothing qualifies, releasing the lock at the
    /// end. `stop` is checked between batches, never inside one, so a
    /// cancelled run ends after at most one short statement. Every batch is
    /// counted in `parloir_retention_rows_total` as it commits, and the run
    /// in `parloir_retention_runs_total`.
    #[tracing::instrument(name = "retention.run", skip_all,
        fields(archived = Empty, purged = Empty, deleted = Empty, forgotten = Empty, outcome = Empty))]
    pub async fn run_once(&self, now: DateTime<Utc>, stop: &CancellationToken) -> RetentionRun {
        let mut changed = RetentionCounts::default();
        let outcome = match self.store.retention.try_lock_retention().await {
            Err(e) => RunOutcome::Failed(e),
            Ok(None) => RunOutcome::Skipped,
            Ok(Some(lease)) => {
                let outcome = self
                    .apply(&self.policy.cutoffs(now), stop, &mut changed)
                    .await
                    .unwrap_or_else(RunOutcome::Failed);
                // The work is done either way; a lease that cannot be
                // released at once goes with its connection, which is closed.
                if let Err(e) = lease.release().await {
                    tracing::warn!(error = %e, "retention lock not released at once (its connection is closed)");
                }
                outcome
            }
        };
        let span = tracing::Span::current();
        span.record("archived", changed.archived);
        span.record("purged", changed.purged);
        span.record("deleted", changed.deleted);
        span.record("forgotten", changed.forgotten);
        span.record("outcome", outcome.instrument().label());
        instruments::retention_run(outcome.instrument());
        RetentionRun { changed, outcome }
    }

    /// What a run at `now` would change, counted with the same conditions,
    /// changing nothing (`parloir retention --dry-run`). Concurrent sends and
    /// deletions may of course change the answer before a real run.
    #[tracing::instrument(name = "retention.dry_run", skip_all)]
    pub async fn dry_run(&self, now: DateTime<Utc>) -> Result<RetentionCounts, StoreError> {
        self.store
            .retention
            .count_retention(&self.policy.cutoffs(now))
            .await
    }

    /// The three actions in order, batch after batch. Purging before
    /// deleting makes each count independent of the other (a message both
    /// purged and deleted counts in both), as a dry run counts them.
    async fn apply(
        &self,
        cutoffs: &RetentionCutoffs,
        stop: &CancellationToken,
        changed: &mut RetentionCounts,
    ) -> Result<RunOutcome, StoreError> {
        let retention = &self.store.retention;
        let limit = self.policy.batch;
        let full = u64::from(limit);

        let mut after = None;
        loop {
            if stop.is_cancelled() {
                return Ok(RunOutcome::Stopped);
            }
            let batch = retention
                .archive_idle_conversations(cutoffs, after, limit)
                .await?;
            changed.archived += batch.archived;
            instruments::retention_rows(RetentionAction::Archived, batch.archived);
            match batch.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }

        // A short batch means nothing qualified beyond it (or a concurrent
        // run took those rows, and continues).
        loop {
            if stop.is_cancelled() {
                return Ok(RunOutcome::Stopped);
            }
            let purged = retention.purge_deleted_messages(cutoffs, limit).await?;
            changed.purged += purged;
            instruments::retention_rows(RetentionAction::Purged, purged);
            if purged < full {
                break;
            }
        }

        loop {
            if stop.is_cancelled() {
                return Ok(RunOutcome::Stopped);
            }
            let forgotten = retention
                .forget_settled_notifications(cutoffs, limit)
                .await?;
            changed.forgotten += forgotten;
            instruments::retention_rows(RetentionAction::Forgotten, forgotten);
            if forgotten < full {
                break;
            }
        }

        if cutoffs.delete_sent_before.is_some() {
            loop {
                if stop.is_cancelled() {
                    return Ok(RunOutcome::Stopped);
                }
                let deleted = retention.delete_old_messages(cutoffs, limit).await?;
                changed.deleted += deleted;
                instruments::retention_rows(RetentionAction::Deleted, deleted);
                if deleted < full {
                    break;
                }
            }
        }
        Ok(RunOutcome::Completed)
    }
}
