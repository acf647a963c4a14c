//! The bounded pool: a fixed number of threads of its own, fed first come, first served
//! from one queue, each holding a share of the value the jobs run against (the
//! `PinService`), and [`Call`], the future of one job's answer.
//!
//! The value lives only on the pool's threads: the last thread to leave drops it. So a
//! store whose drop must not happen on an async runtime's thread (the blocking `postgres`
//! client) is never dropped there, whichever clone of the front end goes last.

use std::future::Future;
use std::num::NonZeroUsize;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures_channel::oneshot;

/// A job: runs against the shared value on one of the pool's threads.
type Job<T> = Box<dyn FnOnce(&T) + Send + 'static>;

/// The answer of a job, or the panic it raised.
type Answer<A> = std::thread::Result<A>;

/// The front end of the pool: the queue's sending side. When the last sender is dropped
/// (front ends and unpolled calls alike), the threads finish the jobs still queued and
/// exit; the last one drops the shared value.
pub(crate) struct Pool<T> {
    queue: mpsc::Sender<Job<T>>,
    threads: NonZeroUsize,
}

impl<T: Send + Sync + 'static> Pool<T> {
    /// Starts `threads` threads named `pin-async-<i>`, each with a share of `value`.
    ///
    /// If the OS refuses a thread, the threads already started exit at once and the
    /// value is dropped on the calling thread (or on the last of those threads).
    pub(crate) fn start(value: T, threads: NonZeroUsize) -> std::io::Result<Self> {
        let value = Arc::new(value);
        let (queue, jobs) = mpsc::channel::<Job<T>>();
        let jobs = Arc::new(Mutex::new(jobs));
        for i in 0..threads.get() {
            let jobs = Arc::clone(&jobs);
            let value = Arc::clone(&value);
            let _detached = std::thread::Builder::new()
                .name(format!("pin-async-{i}"))
                .spawn(move || work(&jobs, &value))?;
        }
        // The threads hold their shares: this one is never the last while `queue` lives.
        drop(value);
        Ok(Self { queue, threads })
    }

    /// A future of `f(&value)`, run on one of the pool's threads. Nothing is queued until
    /// the future is first polled; a job whose future was dropped before a thread took it
    /// is skipped; a job a thread took runs to completion whatever becomes of its future.
    pub(crate) fn call<A, F>(&self, f: F) -> Call<A>
    where
        A: Send + 'static,
        F: FnOnce(&T) -> A + Send + 'static,
    {
        let (answer, rx) = oneshot::channel::<Answer<A>>();
        let job: Job<T> = Box::new(move |value: &T| {
            // Nobody waits for this answer and nothing was started: skip it (its inputs,
            // secrets included, are dropped, and so zeroized, here).
            if answer.is_canceled() {
                return;
            }
            // A panicking job must not take its thread with it: its panic is handed to the
            // future, which resumes it in the awaiting task.
            let result = catch_unwind(AssertUnwindSafe(|| f(value)));
            let _gone = answer.send(result);
        });
        let queue = self.queue.clone();
        Call {
            submit: Some(Box::new(move || {
                // Sending fails only if every thread is gone, which a thread that never
                // lets a job's panic escape does not do; the job is then dropped and the
                // future says so.
                let _ = queue.send(job);
            })),
            answer: rx,
        }
    }
}

impl<T> Pool<T> {
    /// The number of threads.
    pub(crate) fn threads(&self) -> NonZeroUsize {
        self.threads
    }
}

impl<T> Clone for Pool<T> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            threads: self.threads,
        }
    }
}

/// One thread of the pool: takes jobs first come, first served until the queue closes.
fn work<T>(jobs: &Mutex<mpsc::Receiver<Job<T>>>, value: &T) {
    loop {
        let next = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        match next {
            Ok(job) => job(value),
            Err(mpsc::RecvError) => return,
        }
    }
}

/// The answer of one operation run on the pool: a future for any executor (tokio,
/// async-std, smol, `futures::executor::block_on`).
///
/// - Nothing happens until it is first polled: then the operation is queued behind those
///   already waiting for a thread (first come, first served).
/// - Dropped before a thread took the operation: the operation never runs.
/// - Dropped after: the operation runs to completion on its thread and only its answer is
///   lost — a verify whose future is dropped mid-compare still settles its attempt.
/// - If the operation panics, the panic is resumed in the task that awaits the answer; the
///   pool's thread survives it.
///
/// The future is `Send` and `'static`: it borrows neither the service nor the arguments
/// (they were moved or cloned into the operation), so it can be given to a `spawn`.
#[must_use = "a Call does nothing until it is awaited"]
pub struct Call<A> {
    submit: Option<Box<dyn FnOnce() + Send + 'static>>,
    answer: oneshot::Receiver<Answer<A>>,
}

impl<A> std::fmt::Debug for Call<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self { submit, answer: _ } = self;
        f.debug_struct("Call")
            .field("queued", &submit.is_none())
            .finish_non_exhaustive()
    }
}

impl<A> Future for Call<A> {
    type Output = A;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<A> {
        if let Some(submit) = self.submit.take() {
            submit();
        }
        match Pin::new(&mut self.answer).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Ok(answer))) => Poll::Ready(answer),
            Poll::Ready(Ok(Err(panic))) => resume_unwind(panic),
            Poll::Ready(Err(oneshot::Canceled)) => lost(),
        }
    }
}

/// The job was dropped unanswered: only possible if every thread of the pool is gone.
#[allow(
    clippy::panic,
    reason = "no thread is left to run the operation; there is no answer to give"
)]
fn lost() -> ! {
    panic!("pin-async: the pool's threads are gone; the operation was not run")
}
