//! Observation of the two storage seams, written once: every call through
//! an [`Observed`] is a child span (`store` or `shared_state`, with
//! `db.system` and `db.operation`) and a latency sample labelled with its
//! outcome, whichever implementation it wraps.
//!
//! A seam is declared with [`seam!`], which writes the trait and its
//! `Observed` implementation from the same list of methods, so a new method
//! is observed without being written a second time.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument as _;

use crate::instruments;

/// Which seam a call crosses: it names the span and the metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seam {
    /// The durable store (`parloir_store_seconds`).
    Store,
    /// The shared ephemeral state (`parloir_shared_state_seconds`).
    SharedState,
}

/// An error of a seam, as metrics and spans label it.
pub trait Observable: Sized {
    /// The `outcome` label of a failed call.
    fn outcome(&self) -> &'static str;

    /// The error of a call that was still running at its deadline: nothing
    /// is known of what it did, the caller is told to retry.
    fn timed_out(op: &'static str, after: tokio::time::error::Elapsed) -> Self;
}

/// How calls through one seam are observed.
#[derive(Debug, Clone, Copy)]
pub struct Observer {
    seam: Seam,
    system: &'static str,
    deadline: Option<Duration>,
}

impl Observer {
    /// `system` names the backend in spans (`postgresql`, `sqlite`, `redis`, `memory`).
    pub fn new(seam: Seam, system: &'static str) -> Self {
        Self {
            seam,
            system,
            deadline: None,
        }
    }

    /// Every call fails with [`Observable::timed_out`] past `deadline`.
    pub fn with_deadline(mut self, deadline: Option<Duration>) -> Self {
        self.deadline = deadline;
        self
    }

    /// Wraps `inner`, whose calls this observer then observes.
    pub fn wrap<T: ?Sized>(self, inner: Arc<T>) -> Observed<T> {
        Observed {
            inner,
            observer: self,
        }
    }

    /// `call` as a span and a latency sample, bounded by the deadline.
    pub async fn observe<T, E: Observable>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let span = match self.seam {
            Seam::Store => tracing::info_span!(
                "store",
                db.system = self.system,
                db.operation = op,
                outcome = tracing::field::Empty
            ),
            Seam::SharedState => tracing::info_span!(
                "shared_state",
                db.system = self.system,
                db.operation = op,
                outcome = tracing::field::Empty
            ),
        };
        let started = tokio::time::Instant::now();
        let result = within(op, self.deadline, call.instrument(span.clone())).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        span.record("outcome", outcome);
        match self.seam {
            Seam::Store => instruments::store_call(op, outcome, started.elapsed()),
            Seam::SharedState => instruments::shared_state_call(op, outcome, started.elapsed()),
        }
        result
    }
}

/// `call`, or [`Observable::timed_out`] once `deadline` has passed.
pub(crate) async fn within<T, E: Observable>(
    op: &'static str,
    deadline: Option<Duration>,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let Some(deadline) = deadline else {
        return call.await;
    };
    match tokio::time::timeout(deadline, call).await {
        Ok(result) => result,
        Err(elapsed) => Err(E::timed_out(op, elapsed)),
    }
}

/// A seam's implementation whose every call is observed. `seam!` writes its
/// implementation of each seam trait.
pub struct Observed<T: ?Sized> {
    inner: Arc<T>,
    observer: Observer,
}

impl<T: ?Sized> Observed<T> {
    /// The wrapped implementation.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    pub fn observer(&self) -> &Observer {
        &self.observer
    }
}

/// Declares a seam trait (async methods, object safe, `Send + Sync`) and
/// its implementation for `Observed<T>` of any implementation `T`, where each method is
/// observed as the operation its declaration names (`-> R = "op";`). The name is the
/// `op` label of the seam's metrics, which dashboards and alerts select on: spelled
/// out, so that renaming a method does not rename a series.
macro_rules! seam {
    (
        $(#[$attr:meta])*
        $vis:vis trait $name:ident {
            $(
                $(#[$method_attr:meta])*
                async fn $method:ident(&self $(, $arg:ident: $arg_ty:ty)* $(,)?) -> $ret:ty = $op:literal;
            )*
        }
    ) => {
        $(#[$attr])*
        #[async_trait::async_trait]
        $vis trait $name: Send + Sync + 'static {
            $(
                $(#[$method_attr])*
                async fn $method(&self $(, $arg: $arg_ty)*) -> $ret;
            )*
        }

        #[async_trait::async_trait]
        impl<T: $name + ?Sized> $name for $crate::observed::Observed<T> {
            $(
                async fn $method(&self $(, $arg: $arg_ty)*) -> $ret {
                    self.observer()
                        .observe($op, self.inner().$method($($arg),*))
                        .await
                }
            )*
        }
    };
}
pub(crate) use seam;
