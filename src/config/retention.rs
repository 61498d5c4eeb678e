//! Retention settings and their validation.

use std::time::Duration;

use chrono::TimeDelta;

use super::validate::in_range;
use super::{ConfigError, RawConfig, invalid};
use crate::domain::RetentionPolicy;

/// The retention job (issue #14): what it keeps, and how often each node
/// tries to run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    pub policy: RetentionPolicy,
    pub every: Duration,
}

impl Default for RetentionConfig {
    /// The documented defaults: the default policy, every hour.
    fn default() -> Self {
        Self {
            policy: RetentionPolicy::default(),
            every: Duration::from_secs(3600),
        }
    }
}

impl RawConfig {
    pub(super) fn retention(&self) -> Result<RetentionConfig, ConfigError> {
        // A century is plenty; beyond it, a typo more likely than a policy.
        let days = |var, value| in_range(var, value, 1..=36_500).map(|d| TimeDelta::days(d.into()));
        Ok(RetentionConfig {
            policy: RetentionPolicy {
                archive_after: days("PARLOIR_ARCHIVE_AFTER_DAYS", self.archive_after_days)?,
                // 0: a deleted message's content goes at the next run.
                purge_deleted_after: in_range(
                    "PARLOIR_PURGE_DELETED_AFTER_DAYS",
                    self.purge_deleted_after_days,
                    0..=36_500,
                )
                .map(|d| TimeDelta::days(d.into()))?,
                delete_after: self.message_retention()?.map(TimeDelta::days),
                forget_notifications_after: days(
                    "PARLOIR_NOTIFICATIONS_KEPT_DAYS",
                    self.notifications_kept_days,
                )?,
                batch: in_range("PARLOIR_RETENTION_BATCH", self.retention_batch, 1..=10_000)?,
            },
            // At least a minute: a run reads every conversation once.
            every: Duration::from_secs(in_range(
                "PARLOIR_RETENTION_INTERVAL_SECS",
                self.retention_interval_secs,
                60..=7 * 86_400,
            )?),
        })
    }

    /// Days, or `None` when unset or empty (a deployment template that
    /// always sets the variable can leave it empty to keep messages).
    fn message_retention(&self) -> Result<Option<i64>, ConfigError> {
        const VAR: &str = "PARLOIR_MESSAGE_RETENTION_DAYS";
        match self.message_retention_days.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(raw) => {
                let days: u32 = raw
                    .parse()
                    .map_err(|_| invalid(VAR, "must be a number of days, or unset"))?;
                in_range(VAR, days, 1..=36_500).map(|d| Some(d.into()))
            }
        }
    }
}
