//! How the adapter runs its long-lived tasks, so that a server can supervise
//! them as it does its own.

use futures_util::future::BoxFuture;

/// Makes one run of a task. A spawner that restarts tasks calls it again
/// for each run.
pub type TaskStart = Box<dyn FnMut() -> BoxFuture<'static, ()> + Send>;

/// Runs the adapter's long-lived tasks.
pub trait Spawner: Send + Sync + 'static {
    /// Runs the task that `start` makes, named `name` (for logs and
    /// metrics). A task ends by itself when the adapter is dropped. If a run
    /// panics or is aborted, the spawner may call `start` again: the next
    /// run resumes where the adapter's shared state stands.
    fn spawn(&self, name: &'static str, start: TaskStart);
}

/// Spawns each task once on the current Tokio runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSpawner;

impl Spawner for TokioSpawner {
    fn spawn(&self, _name: &'static str, mut start: TaskStart) {
        tokio::spawn(start());
    }
}
