//! Group calls for Redis: calls that arrive while a batch is in flight wait
//! and go out together as the next one — one script run for many sends
//! instead of one each, as `store::batched` does for commits. An idle node
//! sends each call at once (a batch of one); under load a call waits at
//! most one round trip, and Redis runs far fewer commands.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::EphemeralError;
use crate::supervisor::{Lifetime, Supervisor};

/// Most calls in one batch (one script run).
const MAX_BATCH: usize = 256;

/// Calls waiting for the next batch. Sends are already bounded by the
/// node's in-flight limit (`PARLOIR_MAX_SENDS_IN_FLIGHT`, 1,024 by default);
/// this states the bound here too, so a caller past it waits for room
/// instead of growing the queue.
const QUEUE_CAPACITY: usize = 4 * MAX_BATCH;

struct Pending<I, O> {
    input: I,
    reply: oneshot::Sender<Result<O, EphemeralError>>,
}

pub(super) struct Coalescer<I, O> {
    tx: mpsc::Sender<Pending<I, O>>,
    op: &'static str,
}

impl<I: Send + 'static, O: Send + 'static> Coalescer<I, O> {
    /// Starts the batching task under `supervisor` (named `task`), which
    /// restarts it should it fail: the queue outlives the task's runs, and
    /// only the calls of the batch in progress fail with it. `run` answers a
    /// batch with one output per input, in order. Must be called within a
    /// Tokio runtime.
    pub fn new<F, Fut>(
        task: &'static str,
        op: &'static str,
        run: F,
        supervisor: &Supervisor,
    ) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<O>, EphemeralError>> + Send,
    {
        let (tx, rx) = mpsc::channel::<Pending<I, O>>(QUEUE_CAPACITY);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let run = Arc::new(run);
        supervisor.spawn(task, Lifetime::UntilDone, move |stop| {
            let (rx, run) = (rx.clone(), run.clone());
            async move {
                let mut rx = rx.lock().await;
                loop {
                    let first = tokio::select! {
                        () = stop.cancelled() => return,
                        first = rx.recv() => first,
                    };
                    let Some(first) = first else {
                        return; // Every caller is gone.
                    };
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(p) => batch.push(p),
                            Err(_) => break,
                        }
                    }
                    let (inputs, replies): (Vec<I>, Vec<_>) =
                        batch.into_iter().map(|p| (p.input, p.reply)).unzip();
                    let n = inputs.len();
                    match run(inputs).await {
                        Ok(outputs) if outputs.len() == n => {
                            for (reply, out) in replies.into_iter().zip(outputs) {
                                let _ = reply.send(Ok(out));
                            }
                        }
                        Ok(_) => answer_all(replies, op, &"a reply per call"),
                        Err(e) => answer_all(replies, op, &e),
                    }
                }
            }
        });
        Self { tx, op }
    }

    pub async fn call(&self, input: I) -> Result<O, EphemeralError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending { input, reply })
            .await
            .map_err(|_| failed(self.op, &"the batching task has stopped"))?;
        answer
            .await
            .unwrap_or_else(|_| Err(failed(self.op, &"the batching task has stopped")))
    }
}

/// One failure reaches every caller of the batch (each gets its own error).
fn answer_all<O>(
    replies: Vec<oneshot::Sender<Result<O, EphemeralError>>>,
    op: &'static str,
    cause: &dyn std::fmt::Display,
) {
    for reply in replies {
        let _ = reply.send(Err(failed(op, cause)));
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BatchFailed(String);

fn failed(op: &'static str, cause: &dyn std::fmt::Display) -> EphemeralError {
    EphemeralError::Unavailable {
        op,
        source: Box::new(BatchFailed(cause.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn calls_during_a_batch_share_the_next_one_and_get_their_own_answers() {
        let batches = Arc::new(AtomicUsize::new(0));
        let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
        let counted = batches.clone();
        let supervisor = Supervisor::default();
        let doubling = Coalescer::new(
            "test",
            "test",
            move |inputs: Vec<u32>| {
                let counted = counted.clone();
                let mut gate = gate_rx.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    // Hold the first batch until the test has queued more calls.
                    let _ = gate.wait_for(|open| *open).await;
                    Ok(inputs.into_iter().map(|i| i * 2).collect())
                }
            },
            &supervisor,
        );
        let doubling = Arc::new(doubling);
        let first = tokio::spawn({
            let d = doubling.clone();
            async move { d.call(1).await.unwrap() }
        });
        while batches.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let queued: Vec<_> = (2..6)
            .map(|i| {
                let d = doubling.clone();
                tokio::spawn(async move { d.call(i).await.unwrap() })
            })
            .collect();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        gate_tx.send(true).unwrap();
        assert_eq!(first.await.unwrap(), 2);
        let mut answers = Vec::new();
        for q in queued {
            answers.push(q.await.unwrap());
        }
        assert_eq!(answers, vec![4, 6, 8, 10]);
        assert_eq!(
            batches.load(Ordering::SeqCst),
            2,
            "the four queued calls went together"
        );
    }

    #[tokio::test]
    async fn a_full_queue_makes_callers_wait_and_loses_none() {
        let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
        let started = Arc::new(tokio::sync::Notify::new());
        let on_start = started.clone();
        let supervisor = Supervisor::default();
        let echo = Arc::new(Coalescer::new(
            "test",
            "test",
            move |inputs: Vec<usize>| {
                let (mut gate, on_start) = (gate_rx.clone(), on_start.clone());
                async move {
                    on_start.notify_one();
                    let _ = gate.wait_for(|open| *open).await;
                    Ok(inputs)
                }
            },
            &supervisor,
        ));
        let call = |i| {
            let echo = echo.clone();
            tokio::spawn(async move { echo.call(i).await.unwrap() })
        };
        let mut calls = vec![call(0)];
        started.notified().await;
        // The first batch is held; these fill the queue, and one more waits.
        calls.extend((1..=QUEUE_CAPACITY + 1).map(call));
        while echo.tx.capacity() > 0 {
            tokio::task::yield_now().await;
        }
        gate_tx.send(true).unwrap();
        for (i, c) in calls.into_iter().enumerate() {
            assert_eq!(c.await.unwrap(), i, "every call gets its own answer");
        }
    }

    #[tokio::test]
    async fn a_failed_batch_fails_every_call_in_it() {
        let supervisor = Supervisor::default();
        let failing = Coalescer::new(
            "failing",
            "test",
            |_inputs: Vec<u32>| async { Err::<Vec<u32>, _>(failed("test", &"redis is down")) },
            &supervisor,
        );
        let err = failing.call(1).await.unwrap_err();
        assert!(err.to_string().contains("test"), "{err}");
        let short = Coalescer::new(
            "short",
            "test",
            |_inputs: Vec<u32>| async { Ok(Vec::<u32>::new()) },
            &supervisor,
        );
        assert!(short.call(1).await.is_err(), "a missing answer is an error");
    }
}
