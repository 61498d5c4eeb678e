//! Liveness and readiness. Readiness is false while the node starts and
//! once it drains; a shared dependency that is down only degrades the body
//! (PROTOCOL.md §5), since a 503 on every node would empty the Service.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;

use super::HttpState;

const STARTING: u8 = 0;
const READY: u8 = 1;
const DRAINING: u8 = 2;

/// How long a readiness probe waits for the store.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The node's lifecycle as seen by the load balancer.
#[derive(Clone, Debug)]
pub struct Readiness(Arc<tokio::sync::watch::Sender<u8>>);

impl Default for Readiness {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::watch::Sender::new(STARTING)))
    }
}

impl Readiness {
    pub fn set_ready(&self) {
        // Never leave DRAINING: a draining node stays unready until it exits.
        self.0.send_if_modified(|state| {
            let starting = *state == STARTING;
            if starting {
                *state = READY;
            }
            starting
        });
    }

    pub fn set_draining(&self) {
        self.0.send_replace(DRAINING);
    }

    pub fn is_draining(&self) -> bool {
        *self.0.borrow() == DRAINING
    }

    /// Resolves once the node serves (immediately if it already does).
    pub async fn wait_ready(&self) {
        // `wait_for` fails only if the sender is gone; we hold it.
        let _ = self.0.subscribe().wait_for(|state| *state == READY).await;
    }

    fn state(&self) -> u8 {
        *self.0.borrow()
    }
}

pub async fn healthz() -> StatusCode {
    StatusCode::OK
}

#[derive(Serialize)]
struct ReadyBody {
    status: &'static str,
    store: &'static str,
    redis: &'static str,
    /// Long-lived tasks of the node waiting for their restart (a task
    /// failed): the node is not ready until they run again.
    #[serde(rename = "tasksDown", skip_serializing_if = "Vec::is_empty")]
    tasks_down: Vec<&'static str>,
}

pub async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    let lifecycle = state.readiness.state();
    let (store, shared) = tokio::join!(
        tokio::time::timeout(PROBE_TIMEOUT, state.service.store().health.ping()),
        tokio::time::timeout(PROBE_TIMEOUT, state.service.ephemeral().health.ping()),
    );
    let store_up = matches!(store, Ok(Ok(())));
    let redis = match (state.cluster, shared) {
        (false, _) => "disabled",
        (true, Ok(Ok(()))) => "up",
        (true, _) => "down",
    };
    if state.cluster {
        crate::instruments::redis_up(redis == "up");
    }
    let tasks_down = state.supervisor.down();
    let body = ReadyBody {
        status: match (lifecycle, store_up) {
            (STARTING, _) => "starting",
            (DRAINING, _) => "draining",
            _ if !tasks_down.is_empty() => "restarting",
            _ if store_up && redis != "down" => "ready",
            _ => "degraded",
        },
        store: if store_up { "up" } else { "down" },
        redis,
        tasks_down,
    };
    let status = if lifecycle == READY && body.tasks_down.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// Prometheus text format.
pub async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    if let Some(stats) = &state.adapter_stats {
        crate::instruments::adapter(stats.snapshot());
    }
    match &state.metrics {
        Some(handle) => (
            StatusCode::OK,
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics recorder not installed").into_response(),
    }
}
