//! What the retention job keeps and for how long (issue #14): idle
//! conversations are archived, soft-deleted messages lose their content
//! after a grace period, and optionally every message is deleted past an
//! age. Plain values; the store applies them, the job schedules them.

use chrono::{DateTime, TimeDelta, Utc};

/// The ages the retention job acts on, and the size of its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// A conversation with no activity (last message, else creation) for
    /// this long is archived.
    pub archive_after: TimeDelta,
    /// A soft-deleted message loses its content and attachments this long
    /// after its deletion.
    pub purge_deleted_after: TimeDelta,
    /// Messages older than this are deleted for good; `None` keeps them forever.
    pub delete_after: Option<TimeDelta>,
    /// A settled offline notification (sent, cancelled, dead) is forgotten
    /// this long after it settled.
    pub forget_notifications_after: TimeDelta,
    /// Most rows one statement changes: each batch is a short statement of
    /// its own, so the job never holds many row locks or a long transaction.
    pub batch: u32,
}

impl Default for RetentionPolicy {
    /// The documented defaults: archive after 90 days, purge deleted messages
    /// after 30, keep messages forever, 500 rows per statement.
    fn default() -> Self {
        Self {
            archive_after: TimeDelta::days(90),
            purge_deleted_after: TimeDelta::days(30),
            delete_after: None,
            forget_notifications_after: TimeDelta::days(30),
            batch: 500,
        }
    }
}

impl RetentionPolicy {
    /// The instants a run at `now` compares rows with. Computed once per
    /// run, so that every batch (and a dry run) applies the same predicates.
    pub fn cutoffs(&self, now: DateTime<Utc>) -> RetentionCutoffs {
        RetentionCutoffs {
            now,
            archive_idle_before: now - self.archive_after,
            purge_deleted_before: now - self.purge_deleted_after,
            delete_sent_before: self.delete_after.map(|age| now - age),
            forget_notifications_before: now - self.forget_notifications_after,
        }
    }
}

/// The predicates of one retention run, as instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionCutoffs {
    /// When the run happens: what `archived_at` is set to.
    pub now: DateTime<Utc>,
    /// Conversations whose last activity is before this are archived.
    pub archive_idle_before: DateTime<Utc>,
    /// Soft-deleted messages deleted before this are purged.
    pub purge_deleted_before: DateTime<Utc>,
    /// Messages sent before this are deleted (`None`: none are).
    pub delete_sent_before: Option<DateTime<Utc>>,
    /// Notifications settled before this are forgotten.
    pub forget_notifications_before: DateTime<Utc>,
}

/// Rows changed (or, in a dry run, that would change) per retention action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionCounts {
    /// Conversations archived.
    pub archived: u64,
    /// Soft-deleted messages whose content and attachments were erased.
    pub purged: u64,
    /// Messages deleted for good.
    pub deleted: u64,
    /// Settled offline notifications forgotten.
    pub forgotten: u64,
}

impl std::ops::Add for RetentionCounts {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            archived: self.archived + other.archived,
            purged: self.purged + other.purged,
            deleted: self.deleted + other.deleted,
            forgotten: self.forgotten + other.forgotten,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_are_the_ages_before_now() {
        let now = DateTime::from_timestamp_millis(1_800_000_000_000).unwrap();
        let policy = RetentionPolicy {
            delete_after: Some(TimeDelta::days(365)),
            ..RetentionPolicy::default()
        };
        let c = policy.cutoffs(now);
        assert_eq!(c.now, now);
        assert_eq!(c.archive_idle_before, now - TimeDelta::days(90));
        assert_eq!(c.purge_deleted_before, now - TimeDelta::days(30));
        assert_eq!(c.delete_sent_before, Some(now - TimeDelta::days(365)));
        assert_eq!(
            RetentionPolicy::default().cutoffs(now).delete_sent_before,
            None
        );
    }
}
