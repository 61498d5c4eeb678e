//! The node's background loops: cluster membership, the typing sweep and
//! retention. Each only schedules; its work is a `*_once` step of the service.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::service::{Messaging, RetentionJob, RunOutcome};

/// How often expired typing states are looked for.
const TYPING_SWEEP_EVERY: Duration = Duration::from_millis(250);

/// Timings of cluster membership.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cluster {
    pub(super) heartbeat: Duration,
    pub(super) node_ttl: Duration,
}

/// Cluster membership: heartbeats this node and sweeps nodes that died
/// without a goodbye, announcing `user-offline` for their users.
pub(super) async fn keep_membership(service: Messaging, cluster: Cluster, stop: CancellationToken) {
    let mut tick = tokio::time::interval(cluster.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {
                match service.cluster_membership_once(cluster.node_ttl).await {
                    Ok(_) => crate::instruments::redis_up(true),
                    Err(e) => {
                        crate::instruments::redis_up(false);
                        warn!(error = %e, "cluster heartbeat or sweep failed");
                    }
                }
            }
        }
    }
}

pub(super) async fn sweep_typing(service: Messaging, stop: CancellationToken) {
    let mut tick = tokio::time::interval(TYPING_SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {
                if let Err(e) = service.sweep_expired_typing_once(crate::service::now_unix_millis()).await {
                    warn!(error = %e, "typing sweep failed");
                }
            }
        }
    }
}

/// The first retention run waits this long after start (or one interval,
/// if shorter): start-up and the reconnections that follow a rollout come
/// first, and the run has no reason to hurry.
const FIRST_RETENTION_RUN_AFTER: Duration = Duration::from_secs(30);

/// The retention job and how often this node tries to run it.
#[derive(Clone)]
pub(super) struct RetentionSchedule {
    pub(super) job: RetentionJob,
    pub(super) every: Duration,
}

/// Runs retention every interval, as every node does: the store's lock
/// makes one node at a time do the work, and the others skip the run.
pub(super) async fn apply_retention(schedule: RetentionSchedule, stop: CancellationToken) {
    let first = tokio::time::Instant::now() + FIRST_RETENTION_RUN_AFTER.min(schedule.every);
    let mut tick = tokio::time::interval_at(first, schedule.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {
                // Not raced against `stop`: the run checks it between its
                // batches, so stopping waits for one short statement at most
                // and never abandons one half-way.
                let run = schedule.job.run_once(crate::domain::now_millis(), &stop).await;
                let changed = run.changed;
                match run.outcome {
                    RunOutcome::Failed(e) => warn!(
                        error = %e,
                        archived = changed.archived,
                        purged = changed.purged,
                        deleted = changed.deleted,
                        "retention run failed; the next one resumes"
                    ),
                    RunOutcome::Skipped => {
                        tracing::debug!("retention run skipped: another node holds the lock");
                    }
                    RunOutcome::Completed | RunOutcome::Stopped => tracing::info!(
                        archived = changed.archived,
                        purged = changed.purged,
                        deleted = changed.deleted,
                        "retention run ended"
                    ),
                }
            }
        }
    }
}
