//! The node's background loops: cluster membership and the typing sweep.
//! Each only schedules; its work is a `*_once` step of the service.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::service::Messaging;

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
