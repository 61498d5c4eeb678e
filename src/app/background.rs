//! The node's background loops: cluster membership, the typing sweep,
//! offline notifications and retention. Each only schedules; its work is a
//! `*_once` step of the service.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use std::sync::Arc;

use crate::clock::Clock;
use crate::service::{Messaging, Notifier, RetentionJob, RunOutcome};

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

/// How often owed `conversation-latest` events are told (see `service::relay`).
const RELAY_EVERY: Duration = Duration::from_secs(1);

/// Tells conversations whose changes reached only this node their latest
/// number, once other nodes can be reached.
pub(super) async fn relay_owed(service: Messaging, stop: CancellationToken) {
    let mut tick = tokio::time::interval(RELAY_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {
                if let Err(e) = service.relay_once().await {
                    tracing::debug!(error = %e, "owed latest numbers not told yet");
                }
            }
        }
    }
}

/// Keeps this node's view of blocks fresh (see `service::blocks`).
pub(super) async fn refresh_blocks(service: Messaging, stop: CancellationToken) {
    let mut tick = tokio::time::interval(crate::service::BLOCKS_REFRESH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {
                if let Err(e) = service.refresh_blocks_once().await {
                    warn!(error = %e, "blocks not read again; the last ones read stay in use");
                }
            }
        }
    }
}

/// The notification worker's parts.
#[derive(Clone)]
pub(super) struct Notifying {
    pub(super) notifier: Notifier,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) poll: Duration,
}

/// Offline notifications, on every node: gathers new messages into
/// notifications and delivers those due, each poll (at once again while a
/// step finds a full batch), and reports the backlog.
pub(super) async fn notify(notifying: Notifying, stop: CancellationToken) {
    let Notifying {
        notifier,
        clock,
        poll,
    } = notifying;
    let batch = notifier.settings().batch as usize;
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        loop {
            let gathered = match notifier.gather_once(clock.now()).await {
                Ok(n) => n,
                Err(e) => {
                    warn!(error = %e, "gathering offline notifications failed");
                    0
                }
            };
            let delivered = match notifier.deliver_once(clock.now()).await {
                Ok(n) => n,
                Err(e) => {
                    warn!(error = %e, "delivering offline notifications failed");
                    0
                }
            };
            if (gathered < batch && delivered < batch) || stop.is_cancelled() {
                break;
            }
        }
        if let Err(e) = notifier.report_backlog(clock.now()).await {
            warn!(error = %e, "reading the notification backlog failed");
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
    pub(super) clock: Arc<dyn Clock>,
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
                let run = schedule.job.run_once(schedule.clock.now(), &stop).await;
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
