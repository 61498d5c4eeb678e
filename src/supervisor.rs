//! Supervision of the node's long-lived tasks: the token-expiry wheel, the
//! background loops (typing sweep, cluster membership, notifications,
//! retention) and the batching tasks of the store and the shared state.
//!
//! A task that panics, is aborted, or returns while it should run until the
//! node stops is logged once at error level with its cause, counted in
//! `parloir_task_failures_total{task}`, reported as down (the node is not
//! ready while any task is down) and restarted after a backoff. A task that
//! keeps failing (`RestartPolicy::give_up_after` failures within
//! `RestartPolicy::window`) makes the node stop with an error, so that its
//! process exits non-zero and Kubernetes replaces the pod: a node that cannot
//! keep its own machinery running must not keep serving.
//!
//! A leaf: imports nothing of the node but its metrics.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

/// When a task is expected to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Runs until the supervisor stops: returning before that is a failure.
    UntilStopped,
    /// Returns when its work is over (a batching task whose every caller is
    /// gone): returning is the end of it; only a panic or an abort is a failure.
    UntilDone,
}

/// How failed tasks are restarted, and when the node gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Wait before the first restart; doubles with each failure in `window`.
    pub first_delay: Duration,
    /// Longest wait before a restart.
    pub max_delay: Duration,
    /// This many failures of one task within `window` stop the node.
    pub give_up_after: usize,
    pub window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            give_up_after: 5,
            window: Duration::from_secs(60),
        }
    }
}

/// Starts, watches and restarts the node's long-lived tasks. Cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

struct Inner {
    policy: RestartPolicy,
    tracker: TaskTracker,
    /// Cancelled at shutdown: `UntilStopped` tasks end, nothing restarts.
    stop: CancellationToken,
    /// Cancelled when a task failed too often; `gave_up` says which.
    fatal: CancellationToken,
    gave_up: Mutex<Option<String>>,
    /// Tasks between a failure and their restart.
    down: Mutex<HashSet<&'static str>>,
    /// Each running task's current run, for `abort`.
    running: Mutex<HashMap<&'static str, AbortHandle>>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new(RestartPolicy::default())
    }
}

impl Supervisor {
    pub fn new(policy: RestartPolicy) -> Self {
        Self {
            inner: Arc::new(Inner {
                policy,
                tracker: TaskTracker::new(),
                stop: CancellationToken::new(),
                fatal: CancellationToken::new(),
                gave_up: Mutex::new(None),
                down: Mutex::new(HashSet::new()),
                running: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Runs the task `start` makes, under `name`, and again after each
    /// failure. `start` receives the supervisor's stop token; every run gets
    /// a span named after the task. Names are unique per supervisor: a
    /// second task under a name already running replaces it in `abort`.
    pub fn spawn<F, Fut>(&self, name: &'static str, lifetime: Lifetime, mut start: F)
    where
        F: FnMut(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        crate::instruments::task_failures(name, 0);
        let inner = self.inner.clone();
        self.inner.tracker.spawn(async move {
            let mut failures: VecDeque<Instant> = VecDeque::new();
            loop {
                let run = tokio::spawn(
                    start(inner.stop.clone()).instrument(tracing::info_span!("task", task = name)),
                );
                inner.set_running(name, Some(run.abort_handle()));
                let ended = run.await;
                inner.set_running(name, None);
                let cause = match ended {
                    _ if inner.stop.is_cancelled() => return,
                    Ok(()) if lifetime == Lifetime::UntilDone => return,
                    Ok(()) => "it returned while the node was running".to_owned(),
                    Err(e) if e.is_panic() => format!("it panicked: {}", panic_text(e.into_panic())),
                    Err(_) => "it was aborted".to_owned(),
                };
                let now = Instant::now();
                failures.push_back(now);
                while failures
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > inner.policy.window)
                {
                    failures.pop_front();
                }
                crate::instruments::task_failures(name, 1);
                if failures.len() >= inner.policy.give_up_after {
                    tracing::error!(
                        task = name,
                        failures = failures.len(),
                        cause,
                        "a task of the node keeps failing; the node stops"
                    );
                    inner.give_up(format!(
                        "task {name} failed {} times within {:?}, last because {cause}",
                        failures.len(),
                        inner.policy.window
                    ));
                    return;
                }
                let delay = inner.policy.delay_after(failures.len());
                tracing::error!(task = name, cause, restart_in = ?delay, "a task of the node failed; restarting it");
                inner.set_down(name, true);
                tokio::select! {
                    _ = inner.stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                inner.set_down(name, false);
            }
        });
    }

    /// Whether every task runs (none is waiting for its restart).
    pub fn all_running(&self) -> bool {
        self.inner.lock_down().is_empty()
    }

    /// The tasks waiting for their restart, sorted.
    pub fn down(&self) -> Vec<&'static str> {
        let mut down: Vec<_> = self.inner.lock_down().iter().copied().collect();
        down.sort_unstable();
        down
    }

    /// The names of the tasks running now, sorted.
    pub fn running(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.inner.lock_running().keys().copied().collect();
        names.sort_unstable();
        names
    }

    /// Aborts the current run of a task, as a fault would end it: the
    /// supervisor restarts it (fault drills; the integration tests). False
    /// when no task of that name is running.
    pub fn abort(&self, name: &str) -> bool {
        // Down from this moment, not from when the run's end is noticed: a
        // caller waiting for the restart must not see the aborted run as running.
        let Some((name, handle)) = self.inner.lock_running().remove_entry(name) else {
            return false;
        };
        self.inner.set_down(name, true);
        handle.abort();
        true
    }

    /// Resolves when a task failed too often, with what happened.
    pub async fn gave_up(&self) -> String {
        self.inner.fatal.cancelled().await;
        self.inner
            .gave_up
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default()
    }

    /// Stops every task and waits for them to end.
    pub async fn stop(&self) {
        self.inner.stop.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }
}

impl Inner {
    fn lock_down(&self) -> std::sync::MutexGuard<'_, HashSet<&'static str>> {
        self.down.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<&'static str, AbortHandle>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_down(&self, name: &'static str, down: bool) {
        let mut set = self.lock_down();
        if down {
            set.insert(name);
        } else {
            set.remove(name);
        }
        crate::instruments::tasks_down(set.len());
    }

    fn set_running(&self, name: &'static str, handle: Option<AbortHandle>) {
        let mut running = self.lock_running();
        match handle {
            Some(h) => running.insert(name, h),
            None => running.remove(name),
        };
    }

    fn give_up(&self, why: String) {
        let mut gave_up = self.gave_up.lock().unwrap_or_else(|p| p.into_inner());
        gave_up.get_or_insert(why);
        self.fatal.cancel();
    }
}

impl RestartPolicy {
    fn delay_after(&self, failures: usize) -> Duration {
        let doublings = u32::try_from(failures.saturating_sub(1)).unwrap_or(u32::MAX);
        self.first_delay
            .checked_mul(2u32.saturating_pow(doublings.min(16)))
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a payload that is not text".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn quick() -> RestartPolicy {
        RestartPolicy {
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            give_up_after: 3,
            window: Duration::from_secs(60),
        }
    }

    #[tokio::test]
    async fn a_task_that_panics_is_restarted() {
        let supervisor = Supervisor::new(quick());
        let runs = Arc::new(AtomicUsize::new(0));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let counted = runs.clone();
        supervisor.spawn("flaky", Lifetime::UntilStopped, move |stop| {
            let (runs, tx) = (counted.clone(), tx.clone());
            async move {
                let run = runs.fetch_add(1, Ordering::SeqCst);
                tx.send(run).unwrap();
                assert!(run > 0, "the first run fails");
                stop.cancelled().await;
            }
        });
        assert_eq!(rx.recv().await, Some(0));
        assert_eq!(rx.recv().await, Some(1), "restarted after its panic");
        assert!(supervisor.all_running());
        supervisor.stop().await;
    }

    #[tokio::test]
    async fn an_aborted_task_is_restarted_and_a_finished_one_is_not() {
        let supervisor = Supervisor::new(quick());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let started = tx.clone();
        supervisor.spawn("forever", Lifetime::UntilStopped, move |stop| {
            let tx = started.clone();
            async move {
                tx.send("forever").unwrap();
                stop.cancelled().await;
            }
        });
        supervisor.spawn("once", Lifetime::UntilDone, move |_| {
            let tx = tx.clone();
            async move {
                tx.send("once").unwrap();
            }
        });
        let mut first = [rx.recv().await.unwrap(), rx.recv().await.unwrap()];
        first.sort_unstable();
        assert_eq!(first, ["forever", "once"]);
        while !supervisor.abort("forever") {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            rx.recv().await,
            Some("forever"),
            "restarted after the abort"
        );
        supervisor.stop().await;
        assert_eq!(
            rx.try_recv().ok(),
            None,
            "the finished task never ran again"
        );
    }

    #[tokio::test]
    async fn a_task_that_keeps_failing_makes_the_supervisor_give_up() {
        let supervisor = Supervisor::new(quick());
        supervisor.spawn("hopeless", Lifetime::UntilStopped, |_| async {});
        let why = supervisor.gave_up().await;
        assert!(why.contains("hopeless") && why.contains("3 times"), "{why}");
        supervisor.stop().await;
    }

    #[test]
    fn restarts_back_off_to_the_cap() {
        let p = RestartPolicy::default();
        assert_eq!(p.delay_after(1), Duration::from_millis(100));
        assert_eq!(p.delay_after(2), Duration::from_millis(200));
        assert_eq!(p.delay_after(40), p.max_delay);
    }
}
