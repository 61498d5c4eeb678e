//! The node's background loops: cluster membership, the typing sweep and
//! offline notifications. Each only schedules; its work is a `*_once` step
//! of the service.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use std::sync::Arc;

use crate::clock::Clock;
use crate::service::{Messaging, Notifier};

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

/// The notification worker's parts.
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
